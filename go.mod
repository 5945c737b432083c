module github.com/counterd/counterd

go 1.26.0

require (
	github.com/maypok86/otter/v2 v2.4.0
	sigs.k8s.io/yaml v1.6.0
)

require (
	github.com/apache/cassandra-gocql-driver/v2 v2.1.2 // indirect
	github.com/bradfitz/gomemcache v0.0.0-20260422231931-4d751bb6e37c // indirect
	github.com/google/go-cmp v0.7.0 // indirect
	go.yaml.in/yaml/v2 v2.4.4 // indirect
	gopkg.in/inf.v0 v0.9.1 // indirect
)
