package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CounterType selects how a namespace stores and serves its counters. The values match
// counterd's config file.
// +kubebuilder:validation:Enum=EventuallyConsistent;Accurate;BestEffort
type CounterType string

const (
	// EventuallyConsistent counters serve reads from the rollup checkpoint in the cache.
	EventuallyConsistent CounterType = "EventuallyConsistent"
	// Accurate counters add a live scan of the events after the checkpoint to every read.
	Accurate CounterType = "Accurate"
	// BestEffort counters live only in the cache, without idempotency or durability.
	BestEffort CounterType = "BestEffort"
)

// StoreType selects the backend of the event log and the rollup store.
// +kubebuilder:validation:Enum=Cassandra;Embedded
type StoreType string

const (
	// StoreCassandra keeps events and checkpoints in a Cassandra keyspace and runs the
	// gateway, the rollup workers and memcached as separate Deployments.
	StoreCassandra StoreType = "Cassandra"
	// StoreEmbedded keeps them in Pebble on a PersistentVolumeClaim and runs every role in one
	// StatefulSet pod with an in-process cache.
	StoreEmbedded StoreType = "Embedded"
)

// DeletionPolicy selects what happens to the stored counters when the CounterNamespace is
// deleted.
// +kubebuilder:validation:Enum=Retain;Delete
type DeletionPolicy string

const (
	// DeletionRetain keeps the Cassandra keyspace, or the PersistentVolumeClaim of the embedded
	// store, after the CounterNamespace is deleted.
	DeletionRetain DeletionPolicy = "Retain"
	// DeletionDelete drops the keyspace, or deletes the PersistentVolumeClaim.
	DeletionDelete DeletionPolicy = "Delete"
)

// ConsistencyLevel is a CQL consistency level.
// +kubebuilder:validation:Enum=ANY;ONE;TWO;THREE;QUORUM;ALL;LOCAL_QUORUM;EACH_QUORUM;LOCAL_ONE
type ConsistencyLevel string

// ReplicationFactor is the number of replicas of each row in one datacenter.
// +kubebuilder:validation:Minimum=1
// +kubebuilder:validation:Maximum=32
type ReplicationFactor int32

// CounterNamespaceSpec is the desired state of a counter namespace.
//
// The rules below compare durations through CEL, which parses the same unit suffixes as Go
// (ms, s, m, h).
// +kubebuilder:validation:XValidation:rule="duration(self.rollup.acceptLimit) < duration(self.events.timeBucket)",message="rollup.acceptLimit must be shorter than events.timeBucket, so a rollup never folds a time bucket that still accepts writes; lower acceptLimit or raise timeBucket",fieldPath=".rollup.acceptLimit",reason=FieldValueInvalid
// +kubebuilder:validation:XValidation:rule="duration(self.events.retention).getSeconds() >= 2 * duration(self.events.timeBucket).getSeconds()",message="events.retention must be at least two time buckets so events outlive their rollup; raise retention",fieldPath=".events.retention",reason=FieldValueInvalid
type CounterNamespaceSpec struct {
	// CounterType selects the read and write semantics of every counter in the namespace.
	// It cannot change after creation, because the stored data differs per type.
	// +kubebuilder:default=EventuallyConsistent
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="counterType is immutable; create a new CounterNamespace for another type"
	// +optional
	CounterType CounterType `json:"counterType,omitempty"`

	// Store selects and configures the backend of the event log and the rollup store.
	Store StoreSpec `json:"store"`

	// Events configures the event log.
	// +kubebuilder:default={}
	// +optional
	Events EventsSpec `json:"events,omitzero"`

	// Rollup tunes the pipeline that folds events into checkpoints.
	// +kubebuilder:default={}
	// +optional
	Rollup RollupSpec `json:"rollup,omitzero"`

	// Image is the counterd container image for the gateway and the rollup workers, or for the
	// embedded StatefulSet. Component images override it.
	// +kubebuilder:default="ghcr.io/counterd/counterd:v0.1.0"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Image string `json:"image,omitempty"`

	// Gateway configures the gateway Deployment, which serves the counter API. The embedded
	// store runs one pod with the gateway's image and resources and ignores its replicas.
	// +kubebuilder:default={}
	// +optional
	Gateway GatewaySpec `json:"gateway,omitzero"`

	// RollupWorker configures the rollup worker Deployment. The embedded store ignores it.
	// +kubebuilder:default={}
	// +optional
	RollupWorker RollupWorkerSpec `json:"rollupWorker,omitzero"`

	// Cache configures the memcached StatefulSet. The embedded store ignores it and uses an
	// in-process cache.
	// +kubebuilder:default={}
	// +optional
	Cache CacheSpec `json:"cache,omitzero"`

	// DeletionPolicy selects whether deleting the CounterNamespace keeps (Retain) or deletes
	// (Delete) the stored counters.
	// +kubebuilder:default=Retain
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
}

// StoreSpec selects the store. Exactly the section named by type may be set.
// +kubebuilder:validation:XValidation:rule="self.type == 'Cassandra' ? has(self.cassandra) : !has(self.cassandra)",message="store.cassandra must be set when store.type is Cassandra, and only then"
// +kubebuilder:validation:XValidation:rule="self.type == 'Embedded' || !has(self.embedded)",message="store.embedded may be set only when store.type is Embedded"
type StoreSpec struct {
	// Type is Cassandra or Embedded. It cannot change after creation, because the counters
	// stay in the old store.
	// +kubebuilder:default=Embedded
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="store.type is immutable; the counters stay in the old store"
	// +optional
	Type StoreType `json:"type,omitempty"`

	// Cassandra configures the Cassandra store.
	// +optional
	Cassandra *CassandraStore `json:"cassandra,omitempty"`

	// Embedded configures the embedded store.
	// +optional
	Embedded *EmbeddedStore `json:"embedded,omitempty"`
}

// CassandraStore is the connection to a Cassandra cluster and the keyspace that holds the
// namespace's tables.
type CassandraStore struct {
	// ContactPoints are the hosts counterd and the operator connect to first, as host or
	// host:port.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=261
	// +listType=atomic
	ContactPoints []string `json:"contactPoints"`

	// Port is the CQL port of contact points given without one.
	// +kubebuilder:default=9042
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`

	// LocalDatacenter enables datacenter-aware routing to that datacenter.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	LocalDatacenter string `json:"localDatacenter,omitempty"`

	// Keyspace is the Cassandra keyspace of the namespace. It cannot change after creation.
	// +kubebuilder:validation:Pattern=`^[a-z][a-z0-9_]{0,47}$`
	// +kubebuilder:validation:MaxLength=48
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="keyspace is immutable; the counters stay in the old keyspace"
	Keyspace string `json:"keyspace"`

	// Replication maps datacenter names to replication factors (NetworkTopologyStrategy).
	// Empty means SimpleStrategy with one replica, which suits a single test node only. The
	// operator alters an existing keyspace only when this field changes, and then a repair is
	// needed.
	// +kubebuilder:validation:MaxProperties=16
	// +kubebuilder:validation:XValidation:rule="self.all(dc, dc.matches('^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'))",message="datacenter names must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"
	// +optional
	Replication map[string]ReplicationFactor `json:"replication,omitempty"`

	// CredentialsSecretRef names a Secret in the same namespace that holds the Cassandra
	// username and password. Without it, counterd connects without authentication.
	// +optional
	CredentialsSecretRef *CredentialsSecretRef `json:"credentialsSecretRef,omitempty"`

	// ReadConsistency is the CQL consistency level of reads.
	// +kubebuilder:default=LOCAL_QUORUM
	// +optional
	ReadConsistency ConsistencyLevel `json:"readConsistency,omitempty"`

	// WriteConsistency is the CQL consistency level of writes.
	// +kubebuilder:default=LOCAL_QUORUM
	// +optional
	WriteConsistency ConsistencyLevel `json:"writeConsistency,omitempty"`
}

// CredentialsSecretRef names a Secret and the keys of the username and the password in it.
type CredentialsSecretRef struct {
	// Name is the name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// UsernameKey is the key of the username.
	// +kubebuilder:default=username
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +optional
	UsernameKey string `json:"usernameKey,omitempty"`

	// PasswordKey is the key of the password.
	// +kubebuilder:default=password
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +optional
	PasswordKey string `json:"passwordKey,omitempty"`
}

// EmbeddedStore is the volume of the embedded Pebble store.
type EmbeddedStore struct {
	// Size is the requested size of the PersistentVolumeClaim. It cannot change, because a
	// StatefulSet's volume claim template is immutable; expand the claim itself instead.
	// +kubebuilder:default="1Gi"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="size is immutable; expand the PersistentVolumeClaim itself"
	// +optional
	Size resource.Quantity `json:"size,omitzero"`

	// StorageClassName is the StorageClass of the PersistentVolumeClaim. Empty means the
	// cluster's default class. It cannot change, because a StatefulSet's volume claim template
	// is immutable.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="storageClassName is immutable"
	// +kubebuilder:validation:MaxLength=253
	// +optional
	StorageClassName *string `json:"storageClassName,omitempty"`
}

// EventsSpec configures the event log.
type EventsSpec struct {
	// Retention is how long events and their idempotency tokens are kept, as a duration such
	// as "24h". A retry that arrives after its token expired counts again.
	// +kubebuilder:default="24h"
	// +kubebuilder:validation:Pattern=`^([0-9]+(ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('87600h')",message="retention must be from 1s to 87600h (ten years)"
	// +optional
	Retention string `json:"retention,omitempty"`

	// TimeBucket is the width of the event log's time buckets, a whole number of seconds.
	// +kubebuilder:default="1m"
	// +kubebuilder:validation:Pattern=`^([0-9]+(ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('24h')",message="timeBucket must be from 1s to 24h"
	// +kubebuilder:validation:XValidation:rule="duration(self).getMilliseconds() % 1000 == 0",message="timeBucket must be a whole number of seconds, such as 1m"
	// +optional
	TimeBucket string `json:"timeBucket,omitempty"`

	// EventBuckets is the number of partitions per counter and time bucket, so one hot counter
	// spreads over several partitions.
	// +kubebuilder:default=4
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1024
	// +optional
	EventBuckets int32 `json:"eventBuckets,omitempty"`

	// MaxClockSkew is how far in the future an event time may be.
	// +kubebuilder:default="1s"
	// +kubebuilder:validation:Pattern=`^([0-9]+(ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1ms') && duration(self) <= duration('1h')",message="maxClockSkew must be from 1ms to 1h"
	// +optional
	MaxClockSkew string `json:"maxClockSkew,omitempty"`
}

// RollupSpec tunes the pipeline that folds events into checkpoints.
type RollupSpec struct {
	// AcceptLimit is how far in the past an event time may be. Older events are rejected, which
	// lets a rollup fold a window once and for all.
	// +kubebuilder:default="5s"
	// +kubebuilder:validation:Pattern=`^([0-9]+(ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1ms') && duration(self) <= duration('1h')",message="acceptLimit must be from 1ms to 1h"
	// +optional
	AcceptLimit string `json:"acceptLimit,omitempty"`

	// Queues is the number of rollup queues per worker, which is also the number of rollups a
	// worker runs at once.
	// +kubebuilder:default=8
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1024
	// +optional
	Queues int32 `json:"queues,omitempty"`

	// Coalesce is how long a counter waits in its queue so that further writes share one
	// rollup.
	// +kubebuilder:default="200ms"
	// +kubebuilder:validation:Pattern=`^([0-9]+(ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1ms') && duration(self) <= duration('1m')",message="coalesce must be from 1ms to 1m"
	// +optional
	Coalesce string `json:"coalesce,omitempty"`

	// BatchSize is the number of counters a queue takes at once.
	// +kubebuilder:default=64
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	// +optional
	BatchSize int32 `json:"batchSize,omitempty"`

	// SkewMargin is subtracted from the rollup window end on top of the accept limit, to cover
	// clock differences between servers and writes that stall before their commit.
	// +kubebuilder:default="500ms"
	// +kubebuilder:validation:Pattern=`^([0-9]+(ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('1h')",message="skewMargin must be at most 1h"
	// +optional
	SkewMargin string `json:"skewMargin,omitempty"`
}

// WorkloadSpec holds the settings every component shares.
type WorkloadSpec struct {
	// Image overrides the container image of the component.
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Image string `json:"image,omitempty"`

	// Resources are the container's resource requests and limits.
	// +kubebuilder:default={requests: {cpu: "100m", memory: "128Mi"}}
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitzero"`
}

// GatewaySpec configures the gateway Deployment.
type GatewaySpec struct {
	// Replicas is the number of gateway pods.
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	Replicas int32 `json:"replicas,omitempty"`

	WorkloadSpec `json:",inline"`
}

// RollupWorkerSpec configures the rollup worker Deployment.
type RollupWorkerSpec struct {
	// Replicas is the number of rollup worker pods.
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	Replicas int32 `json:"replicas,omitempty"`

	WorkloadSpec `json:",inline"`
}

// CacheSpec configures the memcached StatefulSet.
type CacheSpec struct {
	// Replicas is the number of memcached pods.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	Replicas int32 `json:"replicas,omitempty"`

	// MemoryMegabytes is the item memory of each memcached pod (memcached -m). Keep the
	// memory request above it.
	// +kubebuilder:default=64
	// +kubebuilder:validation:Minimum=16
	// +kubebuilder:validation:Maximum=65536
	// +optional
	MemoryMegabytes int32 `json:"memoryMegabytes,omitempty"`

	// Image is the memcached container image. The pods run it as the user memcache (UID
	// 11211), as in the official memcached images.
	// +kubebuilder:default="docker.io/library/memcached:1.6.38-alpine"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Image string `json:"image,omitempty"`

	// Resources are the memcached container's resource requests and limits.
	// +kubebuilder:default={requests: {cpu: "100m", memory: "128Mi"}}
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitzero"`
}

// CounterNamespaceStatus is the observed state of a counter namespace.
type CounterNamespaceStatus struct {
	// ObservedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions are Ready, KeyspaceReady, GatewayAvailable, RollupAvailable and
	// CacheAvailable.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Endpoint is the in-cluster address of the gateway Service, as host:port.
	// +optional
	Endpoint string `json:"endpoint,omitempty"`

	// GatewayReadyReplicas is the number of ready gateway pods.
	// +optional
	GatewayReadyReplicas int32 `json:"gatewayReadyReplicas,omitempty"`

	// RollupReadyReplicas is the number of ready rollup worker pods.
	// +optional
	RollupReadyReplicas int32 `json:"rollupReadyReplicas,omitempty"`

	// CacheReadyReplicas is the number of ready memcached pods.
	// +optional
	CacheReadyReplicas int32 `json:"cacheReadyReplicas,omitempty"`

	// AppliedReplication is the spec replication the operator last reconciled with the
	// keyspace, such as "{dc1: 3, dc2: 3}" or "{SimpleStrategy: 1}". The operator alters the
	// keyspace only when the spec differs from it.
	// +optional
	AppliedReplication string `json:"appliedReplication,omitempty"`
}

// CounterNamespace is a counter namespace served by counterd: its keyspace, its configuration
// and its gateway, rollup worker and cache workloads.
//
// The object name becomes the counter namespace name that clients send, with '-' replaced by
// '_', so it must fit a Cassandra identifier.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=cns,categories=counterd
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.counterType`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Endpoint",type=string,JSONPath=`.status.endpoint`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z][a-z0-9-]{0,47}$')",message="metadata.name must be a lower-case letter followed by up to 47 lower-case letters, digits or '-', because it becomes the counter namespace name with '-' replaced by '_'"
type CounterNamespace struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   CounterNamespaceSpec   `json:"spec,omitempty"`
	Status CounterNamespaceStatus `json:"status,omitempty"`
}

// CounterNamespaceList is a list of CounterNamespace objects.
// +kubebuilder:object:root=true
type CounterNamespaceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []CounterNamespace `json:"items"`
}

func init() {
	SchemeBuilder.Register(&CounterNamespace{}, &CounterNamespaceList{})
}
