package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/log"

	counterv1alpha1 "github.com/counterd/counterd/api/v1alpha1"
	"github.com/counterd/counterd/counterd/config"
)

// Reasons of the KeyspaceReady condition.
const (
	ReasonKeyspaceReady = "KeyspaceReady"
	ReasonEmbeddedStore = "EmbeddedStore"
	// ReasonKeyspaceCreated is the reason of the event; the condition reason is then KeyspaceReady.
	ReasonKeyspaceCreated      = "KeyspaceCreated"
	ReasonReplicationChanged   = "ReplicationChanged"
	ReasonReplicationDiffers   = "ReplicationDiffers"
	ReasonCredentialsMissing   = "CredentialsMissing"
	ReasonCassandraUnreachable = "CassandraUnreachable"
	ReasonSchemaFailed         = "SchemaFailed"
	ReasonAlterFailed          = "AlterReplicationFailed"
)

// Replication is the replication of a keyspace: NetworkTopologyStrategy with a factor per
// datacenter when DataCenters is non-empty, SimpleStrategy with SimpleFactor otherwise.
type Replication struct {
	DataCenters  map[string]int
	SimpleFactor int
}

// Equal reports whether two replications place the same number of replicas.
func (r Replication) Equal(o Replication) bool {
	if len(r.DataCenters) > 0 || len(o.DataCenters) > 0 {
		return maps.Equal(r.DataCenters, o.DataCenters)
	}
	return r.SimpleFactor == o.SimpleFactor
}

// String renders the replication as in a CQL replication map, with datacenters sorted.
func (r Replication) String() string {
	if len(r.DataCenters) == 0 {
		return fmt.Sprintf("{SimpleStrategy: %d}", r.SimpleFactor)
	}
	dcs := make([]string, 0, len(r.DataCenters))
	for dc := range r.DataCenters {
		dcs = append(dcs, dc)
	}
	sort.Strings(dcs)
	parts := make([]string, len(dcs))
	for i, dc := range dcs {
		parts[i] = fmt.Sprintf("%s: %d", dc, r.DataCenters[dc])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// KeyspaceOptions describes the keyspace and tables of one counter namespace.
type KeyspaceOptions struct {
	Keyspace    string
	Replication Replication
	Namespace   config.Namespace
}

// KeyspaceManager opens sessions to a Cassandra cluster for the keyspace step. The interface
// mirrors counterd's schema package, so the operator and counterd define the tables once.
type KeyspaceManager interface {
	// Connect opens a session. An error means Cassandra is unreachable or rejected the
	// credentials.
	Connect(ctx context.Context, c config.Cassandra, username, password string) (KeyspaceSession, error)
}

// KeyspaceSession is an open connection to Cassandra. Close releases it.
type KeyspaceSession interface {
	// EnsureKeyspace creates the keyspace and its tables when they are missing. It never
	// alters an existing keyspace or table.
	EnsureKeyspace(ctx context.Context, o KeyspaceOptions) error
	// ReadReplication returns the replication of a keyspace and whether the keyspace exists.
	ReadReplication(ctx context.Context, keyspace string) (Replication, bool, error)
	// AlterReplication changes the replication of an existing keyspace.
	AlterReplication(ctx context.Context, keyspace string, r Replication) error
	// DropKeyspace drops a keyspace and every table in it. A missing keyspace is no error.
	DropKeyspace(ctx context.Context, keyspace string) error
	Close()
}

// credentials are the Cassandra username and password; empty means no authentication.
type credentials struct {
	username, password string
}

// errCredentials marks a credentials Secret that is missing or lacks a key.
var errCredentials = errors.New("cassandra credentials unavailable")

// reconcileKeyspace creates the keyspace and tables when missing and alters the replication
// when the spec changed it. It owns the KeyspaceReady condition.
func (r *CounterNamespaceReconciler) reconcileKeyspace(ctx context.Context, s *reconcileState) error {
	cn := s.cn
	if cn.Spec.Store.Type != counterv1alpha1.StoreCassandra {
		setCondition(cn, counterv1alpha1.ConditionKeyspaceReady, metav1.ConditionTrue, ReasonEmbeddedStore,
			"the embedded store keeps its data on the StatefulSet's volume and needs no keyspace")
		return nil
	}

	creds, err := r.readCredentials(ctx, cn)
	if err != nil {
		return r.keyspaceFailed(ctx, s, ReasonCredentialsMissing, err.Error())
	}
	s.credentials = creds

	cass := cn.Spec.Store.Cassandra
	session, err := r.connect(ctx, cn, creds)
	if err != nil {
		return r.keyspaceFailed(ctx, s, ReasonCassandraUnreachable, fmt.Sprintf(
			"failed to connect to Cassandra at %s (port %d): %v; check store.cassandra.contactPoints, the port, the credentials Secret and network policies",
			strings.Join(cass.ContactPoints, ", "), cass.Port, err))
	}
	defer session.Close()

	desired := specReplication(cass.Replication)
	current, exists, err := session.ReadReplication(ctx, cass.Keyspace)
	if err != nil {
		return r.keyspaceFailed(ctx, s, ReasonCassandraUnreachable, fmt.Sprintf(
			"failed to read the replication of keyspace %q: %v; check that Cassandra is up and the user may read system_schema", cass.Keyspace, err))
	}

	ns, err := namespaceConfig(cn)
	if err != nil {
		return r.keyspaceFailed(ctx, s, ReasonSchemaFailed, err.Error())
	}
	if err := session.EnsureKeyspace(ctx, KeyspaceOptions{Keyspace: cass.Keyspace, Replication: desired, Namespace: ns}); err != nil {
		return r.keyspaceFailed(ctx, s, ReasonSchemaFailed, fmt.Sprintf(
			"failed to create keyspace %q or its tables: %v; check that the user may create keyspaces and tables", cass.Keyspace, err))
	}
	if !exists {
		log.FromContext(ctx).Info("Created keyspace", "keyspace", cass.Keyspace, "replication", desired.String())
		r.Recorder.Eventf(cn, nil, corev1.EventTypeNormal, ReasonKeyspaceCreated, "CreateKeyspace",
			"Created keyspace %s with replication %s", cass.Keyspace, desired)
		cn.Status.AppliedReplication = desired.String()
		setCondition(cn, counterv1alpha1.ConditionKeyspaceReady, metav1.ConditionTrue, ReasonKeyspaceReady,
			fmt.Sprintf("created keyspace %s with replication %s", cass.Keyspace, desired))
		return nil
	}
	return r.reconcileReplication(ctx, s, session, current)
}

// reconcileReplication alters the replication of an existing keyspace, but only when the spec
// changed it since the last reconcile. A keyspace whose replication was changed by hand, or
// that existed before the CounterNamespace, keeps its replication: the condition reports the
// difference instead. Adding replicas leaves existing rows on too few nodes until a full
// repair runs, so the condition message gives the repair command.
func (r *CounterNamespaceReconciler) reconcileReplication(ctx context.Context, s *reconcileState, session KeyspaceSession, current Replication) error {
	cn := s.cn
	keyspace := cn.Spec.Store.Cassandra.Keyspace
	desired := specReplication(cn.Spec.Store.Cassandra.Replication)
	applied := cn.Status.AppliedReplication
	specChanged := applied != "" && applied != desired.String()

	switch {
	case current.Equal(desired):
		cn.Status.AppliedReplication = desired.String()
		if c := findCondition(cn, counterv1alpha1.ConditionKeyspaceReady); c != nil && c.Reason == ReasonReplicationChanged {
			// Keep the repair reminder until the next change.
			setCondition(cn, counterv1alpha1.ConditionKeyspaceReady, metav1.ConditionTrue, c.Reason, c.Message)
			return nil
		}
		setCondition(cn, counterv1alpha1.ConditionKeyspaceReady, metav1.ConditionTrue, ReasonKeyspaceReady,
			fmt.Sprintf("keyspace %s exists with replication %s", keyspace, current))
		return nil

	case specChanged:
		if err := session.AlterReplication(ctx, keyspace, desired); err != nil {
			return r.keyspaceFailed(ctx, s, ReasonAlterFailed, fmt.Sprintf(
				"failed to change the replication of keyspace %q from %s to %s: %v; check that the user may alter the keyspace",
				keyspace, current, desired, err))
		}
		cn.Status.AppliedReplication = desired.String()
		message := fmt.Sprintf("changed the replication of keyspace %s from %s to %s; run a full repair (nodetool repair -full %s) on every node so existing rows reach their new replicas",
			keyspace, current, desired, keyspace)
		log.FromContext(ctx).Info("Changed keyspace replication", "keyspace", keyspace, "from", current.String(), "to", desired.String())
		r.Recorder.Eventf(cn, nil, corev1.EventTypeWarning, ReasonReplicationChanged, "AlterReplication", "%s", message)
		setCondition(cn, counterv1alpha1.ConditionKeyspaceReady, metav1.ConditionTrue, ReasonReplicationChanged, message)
		return nil

	default:
		cn.Status.AppliedReplication = desired.String()
		setCondition(cn, counterv1alpha1.ConditionKeyspaceReady, metav1.ConditionTrue, ReasonReplicationDiffers, fmt.Sprintf(
			"keyspace %s has replication %s but the spec asks for %s; the operator changes replication only when store.cassandra.replication changes, so edit the spec or alter the keyspace by hand",
			keyspace, current, desired))
		return nil
	}
}

// keyspaceFailed records a failed keyspace step: the condition, a Warning event, and an
// error, so the controller retries with exponential backoff.
func (r *CounterNamespaceReconciler) keyspaceFailed(ctx context.Context, s *reconcileState, reason, message string) error {
	cn := s.cn
	setCondition(cn, counterv1alpha1.ConditionKeyspaceReady, metav1.ConditionFalse, reason, message)
	s.blocked = &metav1.Condition{Reason: reason, Message: message}
	r.Recorder.Eventf(cn, nil, corev1.EventTypeWarning, reason, "ReconcileKeyspace", "%s", message)
	log.FromContext(ctx).Info("Keyspace step failed; retrying with backoff", "reason", reason, "message", message)
	return fmt.Errorf("keyspace step of CounterNamespace %s/%s: %s", cn.Namespace, cn.Name, reason)
}

// readCredentials reads the username and password from the credentials Secret, if the spec
// names one.
func (r *CounterNamespaceReconciler) readCredentials(ctx context.Context, cn *counterv1alpha1.CounterNamespace) (credentials, error) {
	ref := cn.Spec.Store.Cassandra.CredentialsSecretRef
	if ref == nil {
		return credentials{}, nil
	}
	secret := &corev1.Secret{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: cn.Namespace, Name: ref.Name}, secret)
	if apierrors.IsNotFound(err) {
		return credentials{}, fmt.Errorf("%w: Secret %s/%s named by store.cassandra.credentialsSecretRef is not found; create it with the keys %q and %q",
			errCredentials, cn.Namespace, ref.Name, ref.UsernameKey, ref.PasswordKey)
	}
	if err != nil {
		return credentials{}, fmt.Errorf("%w: failed to read Secret %s/%s: %v", errCredentials, cn.Namespace, ref.Name, err)
	}
	var missing []string
	for _, key := range []string{ref.UsernameKey, ref.PasswordKey} {
		if len(secret.Data[key]) == 0 {
			missing = append(missing, fmt.Sprintf("%q", key))
		}
	}
	if len(missing) > 0 {
		return credentials{}, fmt.Errorf("%w: Secret %s/%s has no value for the key(s) %s; add them or set usernameKey and passwordKey in store.cassandra.credentialsSecretRef",
			errCredentials, cn.Namespace, ref.Name, strings.Join(missing, ", "))
	}
	return credentials{username: string(secret.Data[ref.UsernameKey]), password: string(secret.Data[ref.PasswordKey])}, nil
}

// connect opens a Cassandra session with the connection settings that counterd also uses,
// including counterd's default timeouts.
func (r *CounterNamespaceReconciler) connect(ctx context.Context, cn *counterv1alpha1.CounterNamespace, creds credentials) (KeyspaceSession, error) {
	store := storeConfig(cn)
	store.SetDefaults()
	return r.Keyspaces.Connect(ctx, store.Cassandra, creds.username, creds.password)
}

// specReplication converts the spec's replication map. An empty map means SimpleStrategy with
// one replica, as in counterd's config.
func specReplication(m map[string]counterv1alpha1.ReplicationFactor) Replication {
	if len(m) == 0 {
		return Replication{SimpleFactor: 1}
	}
	dcs := make(map[string]int, len(m))
	for dc, rf := range m {
		dcs[dc] = int(rf)
	}
	return Replication{DataCenters: dcs}
}

func findCondition(cn *counterv1alpha1.CounterNamespace, conditionType string) *metav1.Condition {
	for i := range cn.Status.Conditions {
		if cn.Status.Conditions[i].Type == conditionType {
			return &cn.Status.Conditions[i]
		}
	}
	return nil
}
