package controllers

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	counterv1alpha1 "github.com/counterd/counterd/api/v1alpha1"
)

// The CRD's OpenAPI and CEL rules run in the real API server; no manager is needed.

func TestValidationDefaults(t *testing.T) {
	h := newHarness(t)
	cn := embeddedNamespace("defaults")
	h.create(cn)
	h.get("defaults", cn)

	spec := cn.Spec
	checks := []struct {
		field, got, want string
	}{
		{"counterType", string(spec.CounterType), "EventuallyConsistent"},
		{"deletionPolicy", string(spec.DeletionPolicy), "Retain"},
		{"image", spec.Image, "ghcr.io/counterd/counterd:v0.1.0"},
		{"events.retention", spec.Events.Retention, "24h"},
		{"events.timeBucket", spec.Events.TimeBucket, "1m"},
		{"events.maxClockSkew", spec.Events.MaxClockSkew, "1s"},
		{"rollup.acceptLimit", spec.Rollup.AcceptLimit, "5s"},
		{"rollup.coalesce", spec.Rollup.Coalesce, "200ms"},
		{"rollup.skewMargin", spec.Rollup.SkewMargin, "500ms"},
		{"cache.image", spec.Cache.Image, "docker.io/library/memcached:1.6.38-alpine"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("spec.%s = %q, want %q", c.field, c.got, c.want)
		}
	}
	ints := []struct {
		field     string
		got, want int32
	}{
		{"events.eventBuckets", spec.Events.EventBuckets, 4},
		{"rollup.queues", spec.Rollup.Queues, 8},
		{"rollup.batchSize", spec.Rollup.BatchSize, 64},
		{"gateway.replicas", spec.Gateway.Replicas, 2},
		{"rollupWorker.replicas", spec.RollupWorker.Replicas, 2},
		{"cache.replicas", spec.Cache.Replicas, 1},
		{"cache.memoryMegabytes", spec.Cache.MemoryMegabytes, 64},
	}
	for _, c := range ints {
		if c.got != c.want {
			t.Errorf("spec.%s = %d, want %d", c.field, c.got, c.want)
		}
	}
	if got := spec.Gateway.Resources.Requests.Memory(); got.Cmp(resource.MustParse("128Mi")) != 0 {
		t.Errorf("spec.gateway.resources.requests.memory = %s, want 128Mi", got)
	}
}

func TestValidationRejectsOnCreate(t *testing.T) {
	h := newHarness(t)

	cases := []struct {
		name    string
		object  func() *counterv1alpha1.CounterNamespace
		field   string // the field path the API server reports
		message string // a fragment of the rule's message
	}{
		{
			name: "accept limit not below time bucket",
			object: func() *counterv1alpha1.CounterNamespace {
				cn := embeddedNamespace("accept")
				cn.Spec.Rollup.AcceptLimit = "1m"
				cn.Spec.Events.TimeBucket = "1m"
				return cn
			},
			field:   "spec.rollup.acceptLimit",
			message: "must be shorter than events.timeBucket",
		},
		{
			name: "time bucket not whole seconds",
			object: func() *counterv1alpha1.CounterNamespace {
				cn := embeddedNamespace("bucket")
				cn.Spec.Events.TimeBucket = "1500ms"
				cn.Spec.Rollup.AcceptLimit = "1s"
				return cn
			},
			field:   "spec.events.timeBucket",
			message: "whole number of seconds",
		},
		{
			name: "retention below two buckets",
			object: func() *counterv1alpha1.CounterNamespace {
				cn := embeddedNamespace("retention")
				cn.Spec.Events.Retention = "90s"
				return cn
			},
			field:   "spec.events.retention",
			message: "at least two time buckets",
		},
		{
			name: "duration without unit",
			object: func() *counterv1alpha1.CounterNamespace {
				cn := embeddedNamespace("unit")
				cn.Spec.Rollup.Coalesce = "200"
				return cn
			},
			field:   "spec.rollup.coalesce",
			message: "should match",
		},
		{
			name: "keyspace not an identifier",
			object: func() *counterv1alpha1.CounterNamespace {
				cn := cassandraNamespace("badks", 9042)
				cn.Spec.Store.Cassandra.Keyspace = "Bad-Keyspace"
				return cn
			},
			field:   "spec.store.cassandra.keyspace",
			message: "should match",
		},
		{
			name: "object name not an identifier",
			object: func() *counterv1alpha1.CounterNamespace {
				return embeddedNamespace("9lives")
			},
			// A rule on the object root cannot name a field path into metadata, so the
			// API server reports the field as <nil>; the message names metadata.name.
			field:   "<nil>",
			message: "metadata.name must be a lower-case letter",
		},
		{
			name: "cassandra type without section",
			object: func() *counterv1alpha1.CounterNamespace {
				cn := embeddedNamespace("nocass")
				cn.Spec.Store.Type = counterv1alpha1.StoreCassandra
				return cn
			},
			field:   "spec.store",
			message: "store.cassandra must be set when store.type is Cassandra",
		},
		{
			name: "embedded section on cassandra",
			object: func() *counterv1alpha1.CounterNamespace {
				cn := cassandraNamespace("both", 9042)
				cn.Spec.Store.Embedded = &counterv1alpha1.EmbeddedStore{}
				return cn
			},
			field:   "spec.store",
			message: "store.embedded may be set only when store.type is Embedded",
		},
		{
			name: "replication factor zero",
			object: func() *counterv1alpha1.CounterNamespace {
				cn := cassandraNamespace("rfzero", 9042)
				cn.Spec.Store.Cassandra.Replication = map[string]counterv1alpha1.ReplicationFactor{"dc1": 0}
				return cn
			},
			field:   "spec.store.cassandra.replication.dc1",
			message: "should be greater than or equal to 1",
		},
		{
			name: "datacenter name invalid",
			object: func() *counterv1alpha1.CounterNamespace {
				cn := cassandraNamespace("dcname", 9042)
				cn.Spec.Store.Cassandra.Replication = map[string]counterv1alpha1.ReplicationFactor{"dc 1'": 3}
				return cn
			},
			field:   "spec.store.cassandra.replication",
			message: "datacenter names must be",
		},
		{
			name: "gateway replicas negative",
			object: func() *counterv1alpha1.CounterNamespace {
				cn := embeddedNamespace("noreplicas")
				cn.Spec.Gateway.Replicas = -1
				return cn
			},
			field:   "spec.gateway.replicas",
			message: "should be greater than or equal to 1",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cn := tc.object()
			cn.Namespace = h.ns
			err := k8sClient.Create(t.Context(), cn)
			checkInvalid(t, err, tc.field, tc.message)
		})
	}
}

func TestValidationImmutableFields(t *testing.T) {
	h := newHarness(t)
	h.create(cassandraNamespace("fixed", 9042))

	cases := []struct {
		name    string
		change  func(cn *counterv1alpha1.CounterNamespace)
		field   string
		message string
	}{
		{
			name:    "counter type",
			change:  func(cn *counterv1alpha1.CounterNamespace) { cn.Spec.CounterType = counterv1alpha1.Accurate },
			field:   "spec.counterType",
			message: "counterType is immutable",
		},
		{
			name:    "keyspace",
			change:  func(cn *counterv1alpha1.CounterNamespace) { cn.Spec.Store.Cassandra.Keyspace = "other" },
			field:   "spec.store.cassandra.keyspace",
			message: "keyspace is immutable",
		},
		{
			name: "store type",
			change: func(cn *counterv1alpha1.CounterNamespace) {
				cn.Spec.Store.Type = counterv1alpha1.StoreEmbedded
				cn.Spec.Store.Cassandra = nil
			},
			field:   "spec.store.type",
			message: "store.type is immutable",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cn := &counterv1alpha1.CounterNamespace{}
			h.get("fixed", cn)
			tc.change(cn)
			err := k8sClient.Update(t.Context(), cn)
			checkInvalid(t, err, tc.field, tc.message)
		})
	}

	t.Run("embedded size", func(t *testing.T) {
		cn := embeddedNamespace("volume")
		cn.Spec.Store.Embedded = &counterv1alpha1.EmbeddedStore{Size: resource.MustParse("1Gi")}
		h.create(cn)
		cn.Spec.Store.Embedded.Size = resource.MustParse("2Gi")
		err := k8sClient.Update(t.Context(), cn)
		checkInvalid(t, err, "spec.store.embedded.size", "size is immutable")
	})

	t.Run("replication may change", func(t *testing.T) {
		cn := &counterv1alpha1.CounterNamespace{}
		h.get("fixed", cn)
		cn.Spec.Store.Cassandra.Replication["dc2"] = 3
		if err := k8sClient.Update(t.Context(), cn); err != nil {
			t.Errorf("update of replication rejected: %v", err)
		}
	})
}

// checkInvalid asserts that err is an Invalid error from the API server that names the field
// and contains the message.
func checkInvalid(t *testing.T, err error, field, message string) {
	t.Helper()
	if err == nil {
		t.Fatal("the API server accepted the object")
	}
	if !apierrors.IsInvalid(err) {
		t.Fatalf("error is %v, want Invalid", err)
	}
	status, ok := err.(apierrors.APIStatus)
	if !ok || status.Status().Details == nil {
		t.Fatalf("error %v has no details", err)
	}
	for _, cause := range status.Status().Details.Causes {
		if cause.Field == field && strings.Contains(cause.Message, message) {
			return
		}
	}
	t.Errorf("no cause with field %q and message containing %q in: %+v", field, message, status.Status().Details.Causes)
}

// TestValidationSamples creates every sample in config/samples through the API server, so a
// CRD change that breaks a sample fails here. No manager runs, so nothing dials the
// sample's Cassandra hosts.
func TestValidationSamples(t *testing.T) {
	h := newHarness(t)
	paths, err := filepath.Glob(filepath.Join("..", "config", "samples", "counter_*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 2 {
		t.Fatalf("found %d samples, want one per store type", len(paths))
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			cn := &counterv1alpha1.CounterNamespace{}
			if err := yaml.UnmarshalStrict(data, cn); err != nil {
				t.Fatalf("sample does not match the Go types: %v", err)
			}
			cn.Namespace = h.ns
			if err := k8sClient.Create(t.Context(), cn); err != nil {
				t.Errorf("the API server rejects the sample: %v", err)
			}
		})
	}
}
