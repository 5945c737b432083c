package controllers

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestHeapFloorArgs(t *testing.T) {
	for _, tc := range []struct {
		name      string
		resources corev1.ResourceRequirements
		want      []string
	}{
		{"no request", corev1.ResourceRequirements{}, nil},
		{"limit only", corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}}, nil},
		{"default request", corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")}}, []string{"--gc-heap-floor-mib", "64"}},
		{"decimal request", corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1G")}}, []string{"--gc-heap-floor-mib", "476"}},
		{"below two MiB", corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Mi")}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := heapFloorArgs(tc.resources); !slices.Equal(got, tc.want) {
				t.Fatalf("heapFloorArgs = %v, want %v", got, tc.want)
			}
		})
	}
}
