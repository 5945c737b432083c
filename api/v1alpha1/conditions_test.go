package v1alpha1

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestCounterNamespaceName(t *testing.T) {
	cases := map[string]string{
		"plays":             "plays",
		"title-plays":       "title_plays",
		"a-b-c":             "a_b_c",
		"experiment-2-seen": "experiment_2_seen",
	}
	for name, want := range cases {
		cn := &CounterNamespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if got := cn.CounterNamespaceName(); got != want {
			t.Errorf("CounterNamespaceName() of %q = %q, want %q", name, got, want)
		}
	}
}
