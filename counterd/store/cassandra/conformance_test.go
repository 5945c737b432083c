package cassandra

import (
	"testing"

	"github.com/counterd/counterd/counterd/store/storetest"
)

// The conformance suites run only when COUNTERD_TEST_CASSANDRA is set; each test gets fresh
// keyspaces.

func TestConformance(t *testing.T) { storetest.Run(t, openTestStore) }

func TestRollupConformance(t *testing.T) { storetest.RunRollup(t, openTestStore) }
