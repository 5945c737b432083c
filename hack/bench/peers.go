package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pgBinDir is the directory of initdb and postgres in Debian's postgresql-15 package. A fresh
// Debian machine does not have it on the PATH.
const pgBinDir = "/usr/lib/postgresql/15/bin"

// startTimeout bounds the wait for a peer to accept connections.
const startTimeout = 60 * time.Second

// peerPackages maps each peer binary to the Debian package that installs it.
var peerPackages = map[string]string{"redis-server": "redis-server", "initdb": "postgresql", "postgres": "postgresql"}

// peerBinaries returns the binaries that the peer systems among systems need: redis-server
// for the Redis setups, initdb and postgres for PostgreSQL.
func peerBinaries(systems []string) []string {
	var names []string
	if slices.ContainsFunc(systems, func(s string) bool { return strings.HasPrefix(s, "redis-") }) {
		names = append(names, "redis-server")
	}
	if slices.Contains(systems, sysPostgres) {
		names = append(names, "initdb", "postgres")
	}
	return names
}

// findPeerBinaries returns the paths of the named binaries, or the names that are missing.
func findPeerBinaries(names []string) (map[string]string, []string) {
	found := map[string]string{}
	var missing []string
	for _, name := range names {
		path := filepath.Join(pgBinDir, name)
		if _, err := os.Stat(path); err == nil && name != "redis-server" {
			found[name] = path
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			found[name] = p
			continue
		}
		missing = append(missing, name)
	}
	return found, missing
}

// packagesOf returns the Debian packages that install the named peer binaries.
func packagesOf(names []string) []string {
	var packages []string
	for _, name := range names {
		if pkg := peerPackages[name]; !slices.Contains(packages, pkg) {
			packages = append(packages, pkg)
		}
	}
	return packages
}

// installPeers installs the packages of the named binaries that are missing, from Debian's
// packages. It runs apt-get update once first, because a fresh machine has no package lists.
//
// NOTE: on a machine without a policy-rc.d that forbids it, the packages' install scripts also
// start the system's own Redis and PostgreSQL services. The harness does not use or stop them.
func installPeers(ctx context.Context, names []string) error {
	_, missing := findPeerBinaries(names)
	if len(missing) == 0 {
		return nil
	}
	packages := packagesOf(missing)
	for _, args := range [][]string{{"update"}, append([]string{"install", "-y"}, packages...)} {
		slog.Info("running apt-get", "args", args)
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout = os.Stderr
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("apt-get %s failed: %w; install %s yourself and pass --skip-install", strings.Join(args, " "), err, strings.Join(packages, " and "))
		}
	}
	if _, missing := findPeerBinaries(names); len(missing) > 0 {
		return fmt.Errorf("still missing after apt-get install: %s", strings.Join(missing, ", "))
	}
	return nil
}

// toolVersion returns the first line of `path args...`, or the error text.
func toolVersion(path string, args ...string) string {
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("%s: %v", path, err)
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// redisConfig returns a redis-server configuration: loopback only, AOF with the given
// appendfsync policy, no RDB snapshots.
func redisConfig(port int, dir, appendfsync string) string {
	return fmt.Sprintf(`bind 127.0.0.1
protected-mode yes
port %d
dir %s
daemonize no
save ""
appendonly yes
appendfsync %s
appendfilename "appendonly.aof"
`, port, dir, appendfsync)
}

// startRedis starts redis-server with its data in a new directory under tmp.
func startRedis(ctx context.Context, sup *supervisor, binary, tmp, appendfsync string) (*process, string, string, error) {
	dir, err := os.MkdirTemp(tmp, "redis-"+appendfsync+"-")
	if err != nil {
		return nil, "", "", err
	}
	port, err := freePort()
	if err != nil {
		return nil, "", "", err
	}
	config := redisConfig(port, dir, appendfsync)
	configPath := filepath.Join(dir, "redis.conf")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		return nil, "", "", err
	}
	p, err := sup.start("redis-server ("+appendfsync+")", exec.Command(binary, configPath), filepath.Join(dir, "redis.log"), syscall.SIGTERM, 0)
	if err != nil {
		return nil, "", "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	if err := waitTCP(ctx, p, addr, startTimeout); err != nil {
		return p, "", "", err
	}
	return p, addr, config, nil
}

// postgresSettings are passed to postgres with -c. They are the report's statement of the
// PostgreSQL configuration.
func postgresSettings(port int, socketDir string) []string {
	return []string{
		"listen_addresses=127.0.0.1",
		"port=" + strconv.Itoa(port),
		"unix_socket_directories=" + socketDir,
		"synchronous_commit=on",
		"fsync=on",
		"full_page_writes=on",
		"max_connections=200",
		"shared_buffers=512MB",
	}
}

// startPostgres creates a cluster with initdb in a new directory under tmp and runs postgres
// on it. When the harness runs as root, both run as the postgres user, which owns the
// directory, because PostgreSQL refuses to run as root. The server runs as a direct child
// instead of through pg_ctl, so that the harness holds its PID and can stop it on Ctrl-C.
func startPostgres(ctx context.Context, sup *supervisor, bins map[string]string, tmp string) (*process, string, []string, error) {
	dir, err := os.MkdirTemp(tmp, "postgres-")
	if err != nil {
		return nil, "", nil, err
	}
	dataDir := filepath.Join(dir, "data")

	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, "", nil, fmt.Errorf("running as root needs the postgres user, which the postgresql package creates: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		// The postgres user must be able to reach dir through tmp.
		for _, d := range []string{tmp, dir} {
			if err := os.Chown(d, uid, gid); err != nil {
				return nil, "", nil, err
			}
		}
	}

	initdb := exec.CommandContext(ctx, bins["initdb"], "-D", dataDir, "-U", "bench", "--auth=trust", "--encoding=UTF8", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, "", nil, fmt.Errorf("initdb failed: %w\n%s", err, out)
	}

	port, err := freePort()
	if err != nil {
		return nil, "", nil, err
	}
	settings := postgresSettings(port, dir)
	args := []string{"-D", dataDir}
	for _, s := range settings {
		args = append(args, "-c", s)
	}
	cmd := exec.Command(bins["postgres"], args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	// SIGINT is PostgreSQL's fast shutdown: it rolls back open transactions and exits cleanly.
	p, err := sup.start("postgres", cmd, filepath.Join(dir, "postgres.log"), syscall.SIGINT, 0)
	if err != nil {
		return nil, "", nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	if err := waitTCP(ctx, p, addr, startTimeout); err != nil {
		return p, "", nil, err
	}
	url := fmt.Sprintf("postgres://bench@%s/postgres?sslmode=disable", addr)
	return p, url, settings, nil
}

// buildCounterd builds the counterd binary of the repository at root into dir.
func buildCounterd(ctx context.Context, root, dir string) (string, error) {
	binary := filepath.Join(dir, "counterd")
	slog.Info("building counterd", "output", binary)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", binary, "./counterd/cmd/counterd")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./counterd/cmd/counterd failed: %w\n%s", err, out)
	}
	return binary, nil
}

// startCounterd runs `counterd serve` with the default config, Go's profiles served under
// /debug/pprof/ and serveFlags. Its data goes to dataDir, or to a new directory under tmp when
// dataDir is empty. It returns the address and the data directory.
func startCounterd(ctx context.Context, sup *supervisor, binary string, serveFlags []string, tmp, dataDir string) (*process, string, string, error) {
	dir, err := os.MkdirTemp(tmp, "counterd-")
	if err != nil {
		return nil, "", "", err
	}
	if dataDir == "" {
		dataDir = filepath.Join(dir, "data")
	}
	port, err := freePort()
	if err != nil {
		return nil, "", "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	args := append([]string{"serve", "--listen", addr, "--data-dir", dataDir, "--pprof"}, serveFlags...)
	cmd := exec.Command(binary, args...)
	p, err := sup.start("counterd", cmd, filepath.Join(dir, "counterd.log"), syscall.SIGTERM, syscall.SIGQUIT)
	if err != nil {
		return nil, "", "", err
	}
	if err := waitReady(ctx, p, "http://"+addr+"/readyz", startTimeout); err != nil {
		return p, "", "", err
	}
	return p, addr, dataDir, nil
}

// waitReady polls url until it returns 200, p exits, or timeout passes.
func waitReady(ctx context.Context, p *process, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before %s returned 200: %v (see its log)", p.name, url, p.err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s did not return 200 within %v (see its log)", p.name, url, timeout)
		}
	}
}

// peerVersions returns the version lines of the peers among bins, or an error when they are
// not Redis 7 and PostgreSQL 15, the versions this comparison is defined for.
func peerVersions(bins map[string]string) ([]string, error) {
	var versions []string
	if path, ok := bins["redis-server"]; ok {
		v := toolVersion(path, "--version")
		if !strings.Contains(v, " v=7.") {
			return nil, fmt.Errorf("%s is %q, expected Redis 7.x: install Debian 12's redis-server package", path, v)
		}
		versions = append(versions, "redis: "+v)
	}
	if path, ok := bins["postgres"]; ok {
		v := toolVersion(path, "--version")
		if !strings.Contains(v, "(PostgreSQL) 15.") {
			return nil, fmt.Errorf("%s is %q, expected PostgreSQL 15: install Debian 12's postgresql-15 package", path, v)
		}
		versions = append(versions, "postgres: "+v)
	}
	return versions, nil
}
