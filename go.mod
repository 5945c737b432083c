module github.com/counterd/counterd

go 1.26.0

require (
	github.com/maypok86/otter/v2 v2.4.0
	sigs.k8s.io/yaml v1.6.0
)

require (
	github.com/google/go-cmp v0.7.0 // indirect
	go.yaml.in/yaml/v2 v2.4.4 // indirect
)
