// Package v1alpha1 contains the CounterNamespace API of the group counter.counterd.dev.
// +kubebuilder:object:generate=true
// +groupName=counter.counterd.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of the CounterNamespace API.
	GroupVersion = schema.GroupVersion{Group: "counter.counterd.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the API types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the API types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
