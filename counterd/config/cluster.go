package config

import (
	"fmt"
	"net"
	"time"
)

// Roles of a counterd process.
const (
	// RoleAll serves the API and runs the rollups in one process: the standalone mode.
	RoleAll = "all"
	// RoleGateway serves the API and sends rollup hints to the rollup workers.
	RoleGateway = "gateway"
	// RoleRollup runs the rollup queues and the sweep, and takes hints from gateways.
	RoleRollup = "rollup"
)

// DefaultWorkerRefresh is how often the rollup workers' DNS name is resolved again.
const DefaultWorkerRefresh = 5 * time.Second

// Cluster configures the split between gateways and rollup workers.
type Cluster struct {
	// Role is "all" (the default), "gateway" or "rollup".
	Role string `json:"role,omitempty"`
	// RollupWorkers lists the workers' host:port addresses. Gateways send hints to them and
	// workers split the sweep between them.
	RollupWorkers []string `json:"rollupWorkers,omitempty"`
	// RollupService is a DNS name whose A and AAAA records are the workers, such as a
	// Kubernetes headless Service; RollupServicePort is their port.
	RollupService     string `json:"rollupService,omitempty"`
	RollupServicePort int    `json:"rollupServicePort,omitempty"`
	// RefreshInterval is how often RollupService is resolved again.
	RefreshInterval Duration `json:"refreshInterval,omitempty"`
	// Advertise is this worker's own address as the other members list it: host:port, or a
	// bare IP that takes RollupServicePort.
	Advertise string `json:"advertise,omitempty"`
}

// SetDefaults fills unset cluster fields.
func (c *Cluster) SetDefaults() {
	if c.Role == "" {
		c.Role = RoleAll
	}
	if c.RollupServicePort == 0 {
		c.RollupServicePort = 8080
	}
	setDuration(&c.RefreshInterval, DefaultWorkerRefresh)
}

func (c *Cluster) validate(field string) []error {
	var errs []error
	switch c.Role {
	case RoleAll:
		return nil
	case RoleGateway, RoleRollup:
	default:
		return []error{fmt.Errorf("%s.role: %q is not a role; use %q, %q or %q", field, c.Role, RoleAll, RoleGateway, RoleRollup)}
	}
	if len(c.RollupWorkers) == 0 && c.RollupService == "" {
		errs = append(errs, fmt.Errorf("%s.rollupWorkers: role %q needs the rollup workers; set rollupWorkers (host:port list) or rollupService (a DNS name)", field, c.Role))
	}
	if len(c.RollupWorkers) > 0 && c.RollupService != "" {
		errs = append(errs, fmt.Errorf("%s.rollupService: set either rollupWorkers or rollupService, not both", field))
	}
	for i, w := range c.RollupWorkers {
		if _, _, err := net.SplitHostPort(w); err != nil {
			errs = append(errs, fmt.Errorf("%s.rollupWorkers[%d]: %q is not host:port; write it as host:port, such as counterd-rollup-0:8080", field, i, w))
		}
	}
	if c.RollupServicePort < 1 || c.RollupServicePort > 65535 {
		errs = append(errs, fmt.Errorf("%s.rollupServicePort: %d is not a TCP port; use 1 to 65535", field, c.RollupServicePort))
	}
	if c.RefreshInterval.Duration < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("%s.refreshInterval: %s is too short; use at least 100ms", field, c.RefreshInterval.Duration))
	}
	if c.Role == RoleRollup && c.Advertise == "" {
		errs = append(errs, fmt.Errorf("%s.advertise: a rollup worker needs its own address as the others list it (host:port, or an IP), to know which sweep shards it owns", field))
	}
	return errs
}
