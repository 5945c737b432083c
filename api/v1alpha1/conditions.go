package v1alpha1

// Condition types of a CounterNamespace.
const (
	// ConditionReady is True when every other condition is True.
	ConditionReady = "Ready"
	// ConditionKeyspaceReady is True when the keyspace and its tables exist, or the store is
	// embedded.
	ConditionKeyspaceReady = "KeyspaceReady"
	// ConditionGatewayAvailable is True when the gateway pods are rolled out and available.
	ConditionGatewayAvailable = "GatewayAvailable"
	// ConditionRollupAvailable is True when the rollup worker pods are rolled out and available.
	ConditionRollupAvailable = "RollupAvailable"
	// ConditionCacheAvailable is True when the memcached pods are rolled out and available, or
	// the store is embedded and the cache runs in process.
	ConditionCacheAvailable = "CacheAvailable"
)

// ForceDeleteAnnotation, set to "true", lets a CounterNamespace with deletionPolicy Delete be
// removed although its keyspace could not be dropped. The keyspace then stays in Cassandra.
const ForceDeleteAnnotation = "counter.counterd.dev/force-delete"

// CounterNamespaceName returns the counter namespace name that clients send for this object:
// the object name with '-' replaced by '_'.
func (c *CounterNamespace) CounterNamespaceName() string {
	b := []byte(c.Name)
	for i := range b {
		if b[i] == '-' {
			b[i] = '_'
		}
	}
	return string(b)
}
