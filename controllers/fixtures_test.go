package controllers

import (
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	counterv1alpha1 "github.com/counterd/counterd/api/v1alpha1"
)

// cassandraNamespace returns a CounterNamespace on the Cassandra store at 127.0.0.1:port,
// with a credentials Secret called name-credentials and the keyspace named after name.
func cassandraNamespace(name string, port int32) *counterv1alpha1.CounterNamespace {
	return &counterv1alpha1.CounterNamespace{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: counterv1alpha1.CounterNamespaceSpec{
			Store: counterv1alpha1.StoreSpec{
				Type: counterv1alpha1.StoreCassandra,
				Cassandra: &counterv1alpha1.CassandraStore{
					ContactPoints:        []string{"127.0.0.1"},
					Port:                 port,
					Keyspace:             strings.ReplaceAll(name, "-", "_"),
					Replication:          map[string]counterv1alpha1.ReplicationFactor{"dc1": 3},
					CredentialsSecretRef: &counterv1alpha1.CredentialsSecretRef{Name: name + "-credentials"},
				},
			},
		},
	}
}

// embeddedNamespace returns a CounterNamespace on the embedded store.
func embeddedNamespace(name string) *counterv1alpha1.CounterNamespace {
	return &counterv1alpha1.CounterNamespace{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: counterv1alpha1.CounterNamespaceSpec{
			Store: counterv1alpha1.StoreSpec{Type: counterv1alpha1.StoreEmbedded},
		},
	}
}

func credentialsSecret(name string, data map[string]string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: data}
}

var errorNoFinalizer = errors.New("finalizer not added yet")

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

func clientInNamespace(ns string) client.InNamespace { return client.InNamespace(ns) }
