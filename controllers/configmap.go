package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/log"

	counterv1alpha1 "github.com/counterd/counterd/api/v1alpha1"
	"github.com/counterd/counterd/counterd/config"
)

// Paths and ports inside the counterd pods.
const (
	configFileName = "config.yaml"
	configDir      = "/etc/counterd"
	dataDir        = "/var/lib/counterd"
	counterdPort   = 8080
	memcachedPort  = 11211
)

// ConfigHashAnnotation on a pod template holds the SHA-256 of the config file the pods run
// with. The rendering is deterministic, so an unchanged spec gives the same hash after an
// operator restart or upgrade and rolls no pods.
const ConfigHashAnnotation = "counter.counterd.dev/config-hash"

// ReasonInvalidConfig is the Ready reason when the spec renders a config that counterd would
// reject.
const ReasonInvalidConfig = "InvalidConfig"

// reconcileConfig renders counterd's config file from the spec into a ConfigMap. It validates
// the file with the config parser that counterd uses, so the operator writes no config that
// its copy of that parser rejects. A rejected spec stops the chain without a retry, because
// only a spec change can fix it.
func (r *CounterNamespaceReconciler) reconcileConfig(ctx context.Context, s *reconcileState) error {
	cn := s.cn
	data, err := renderConfig(cn)
	if err != nil {
		message := fmt.Sprintf("failed to render counterd's config: %v; fix the CounterNamespace spec field that sets this config field", err)
		s.blocked = &metav1.Condition{Reason: ReasonInvalidConfig, Message: message}
		r.Recorder.Eventf(cn, nil, corev1.EventTypeWarning, ReasonInvalidConfig, "RenderConfig", "%s", message)
		log.FromContext(ctx).Info("Spec renders an invalid config; waiting for a spec change", "error", err.Error())
		return errStop
	}

	sum := sha256.Sum256(data)
	s.configHash = hex.EncodeToString(sum[:])

	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: childMeta(cn, configMapName(cn), componentConfig),
		Data:       map[string]string{configFileName: string(data)},
	}
	if err := r.apply(ctx, cn, cm); err != nil {
		return r.applyFailed(s, err)
	}
	return nil
}

// renderConfig returns counterd's config file for the spec. Credentials are not in it, because
// the pods read them from the Secret through environment variables.
//
// The file holds only values from the spec and fixed paths. Settings the spec does not have,
// such as the Cassandra timeouts, are left out so counterd applies its own defaults, and a
// new counterd default in an operator upgrade changes no config hash and rolls no pods.
func renderConfig(cn *counterv1alpha1.CounterNamespace) ([]byte, error) {
	ns, err := namespaceConfig(cn)
	if err != nil {
		return nil, err
	}
	cfg := config.Config{
		Listen:     fmt.Sprintf(":%d", counterdPort),
		DataDir:    dataDir,
		Store:      storeConfig(cn),
		Cache:      cacheConfig(cn),
		Cluster:    clusterConfig(cn),
		Namespaces: []config.Namespace{ns},
	}
	data, err := cfg.Marshal()
	if err != nil {
		return nil, fmt.Errorf("failed to marshal config: %w", err)
	}
	if _, err := config.Parse(data); err != nil {
		return nil, fmt.Errorf("counterd rejects the rendered config: %w", err)
	}
	return data, nil
}

// namespaceConfig converts the spec into counterd's namespace settings. The CRD has already
// checked the durations, so a parse error here means the CRD and this code disagree.
func namespaceConfig(cn *counterv1alpha1.CounterNamespace) (config.Namespace, error) {
	spec := &cn.Spec
	ns := config.Namespace{
		Name:         cn.CounterNamespaceName(),
		Type:         config.CounterType(spec.CounterType),
		EventBuckets: int(spec.Events.EventBuckets),
		Rollup: config.Rollup{
			Queues:    int(spec.Rollup.Queues),
			BatchSize: int(spec.Rollup.BatchSize),
		},
	}
	if spec.Store.Type == counterv1alpha1.StoreCassandra {
		ns.Keyspace = spec.Store.Cassandra.Keyspace
	}

	err := errors.Join(
		parseDuration("events.retention", spec.Events.Retention, &ns.Retention),
		parseDuration("events.timeBucket", spec.Events.TimeBucket, &ns.TimeBucket),
		parseDuration("events.maxClockSkew", spec.Events.MaxClockSkew, &ns.MaxClockSkew),
		parseDuration("rollup.acceptLimit", spec.Rollup.AcceptLimit, &ns.AcceptLimit),
		parseDuration("rollup.coalesce", spec.Rollup.Coalesce, &ns.Rollup.Coalesce),
		parseDuration("rollup.skewMargin", spec.Rollup.SkewMargin, &ns.Rollup.SkewMargin),
	)
	return ns, err
}

// parseDuration parses a spec duration. An empty value leaves the field unset, so counterd
// applies its default.
func parseDuration(field, value string, into *config.Duration) error {
	if value == "" {
		return nil
	}
	d, err := time.ParseDuration(value)
	if err != nil {
		return fmt.Errorf("spec.%s: %q is not a duration: %w", field, value, err)
	}
	into.Duration = d
	return nil
}

// storeConfig converts the spec's store section. Username and password stay out of the file.
func storeConfig(cn *counterv1alpha1.CounterNamespace) config.Store {
	if cn.Spec.Store.Type != counterv1alpha1.StoreCassandra {
		return config.Store{Type: config.StoreEmbedded}
	}
	c := cn.Spec.Store.Cassandra
	var replication map[string]int
	if len(c.Replication) > 0 {
		replication = specReplication(c.Replication).DataCenters
	}
	store := config.Store{
		Type: config.StoreCassandra,
		Cassandra: config.Cassandra{
			Hosts:            append([]string(nil), c.ContactPoints...),
			Port:             int(c.Port),
			LocalDatacenter:  c.LocalDatacenter,
			Replication:      replication,
			ReadConsistency:  string(c.ReadConsistency),
			WriteConsistency: string(c.WriteConsistency),
		},
	}
	return store
}

// clusterConfig points gateways and rollup workers at the workers' headless Service. The role
// of each pod comes from its --role flag, so the same file serves both. The embedded store runs
// every role in one pod and needs no cluster settings.
func clusterConfig(cn *counterv1alpha1.CounterNamespace) config.Cluster {
	if cn.Spec.Store.Type != counterv1alpha1.StoreCassandra {
		return config.Cluster{}
	}
	return config.Cluster{
		RollupService:     fmt.Sprintf("%s.%s.svc", rollupName(cn), cn.Namespace),
		RollupServicePort: counterdPort,
	}
}

// cacheConfig selects memcached behind the cache Service for the Cassandra store and the
// in-process cache for the embedded store.
func cacheConfig(cn *counterv1alpha1.CounterNamespace) config.Cache {
	if cn.Spec.Store.Type != counterv1alpha1.StoreCassandra {
		return config.Cache{Type: config.CacheMemory}
	}
	return config.Cache{
		Type:      config.CacheMemcached,
		Memcached: config.Memcached{Servers: cacheServers(cn)},
	}
}

// cacheServers lists the memcached pods by their DNS names under the cache's headless
// Service, in ordinal order. Every counterd process reads the same list, so all of them spread
// the keys over the pods in the same way: a gateway reads a counter's checkpoint from the pod
// that the rollup workers update. A change of cache.replicas changes the list, and with it the
// config hash that rolls the counterd pods.
func cacheServers(cn *counterv1alpha1.CounterNamespace) []string {
	servers := make([]string, cn.Spec.Cache.Replicas)
	for i := range servers {
		servers[i] = fmt.Sprintf("%s-%d.%s.%s.svc:%d", cacheName(cn), i, cacheName(cn), cn.Namespace, memcachedPort)
	}
	return servers
}
