package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/herd-project/herd/daemon/api"
)

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1 // the request failed
	exitUsage = 2 // bad flags, arguments or config
)

// usageError marks an error that is the caller's: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// globals are the flags every CLI command shares.
type globals struct {
	address    string
	token      string
	caCert     string
	clientCert string
	clientKey  string
	output     string
	consistent bool
	warned     bool
	stdout     io.Writer
	stderr     io.Writer
}

func (g *globals) client() (*api.Client, error) {
	addr := g.address
	tlsOn := g.caCert != "" || g.clientCert != ""
	if tlsOn && !strings.Contains(addr, "://") {
		addr = "https://" + addr
	}
	c, err := api.NewClient(addr, g.token)
	if err != nil {
		return nil, usageError{fmt.Errorf("--address: %w", err)}
	}
	c.Consistent = g.consistent
	c.Warn = func(msg string) {
		if !g.warned {
			g.warned = true
			fmt.Fprintf(g.stderr, "warning: this answer may not be current: %s (--consistent asks the leader)\n", esc(msg))
		}
	}
	if tlsOn {
		cfg, err := api.ClientTLS(g.caCert, g.clientCert, g.clientKey)
		if err != nil {
			return nil, usageError{fmt.Errorf("--ca-cert/--client-cert: %w", err)}
		}
		c.UseTLS(cfg)
	}
	return c, nil
}

func (g *globals) json() (bool, error) {
	switch g.output {
	case "", "table":
		return false, nil
	case "json":
		return true, nil
	}
	return false, usagef("-o/--output: %q is not one of table, json", g.output)
}

var version = "dev"

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "herd",
		Short: "Herd keeps virtualization clusters running through maintenance and host failures",
		Long: `Herd keeps virtualization clusters running through maintenance and host failures.

The same binary runs the server ("herd server") and talks to its API. The CLI finds
the API through HERD_ADDR (default http://127.0.0.1:7420) and HERD_TOKEN, or the
--address and --token flags; over HTTPS it trusts the CA in HERD_CACERT (--ca-cert).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	addr := os.Getenv("HERD_ADDR")
	if addr == "" {
		addr = "http://127.0.0.1:7420"
	}
	root.PersistentFlags().StringVar(&g.address, "address", addr, "API address (env HERD_ADDR)")
	root.PersistentFlags().StringVar(&g.token, "token", os.Getenv("HERD_TOKEN"), "API token (env HERD_TOKEN)")
	root.PersistentFlags().BoolVar(&g.consistent, "consistent", false, "read from the leader, never a stale copy (fails when there is no leader)")
	root.PersistentFlags().StringVar(&g.caCert, "ca-cert", os.Getenv("HERD_CACERT"), "CA certificate (PEM) that signed the API's certificate (env HERD_CACERT)")
	root.PersistentFlags().StringVar(&g.clientCert, "client-cert", os.Getenv("HERD_CLIENT_CERT"), "client certificate (PEM) when the API verifies clients (env HERD_CLIENT_CERT)")
	root.PersistentFlags().StringVar(&g.clientKey, "client-key", os.Getenv("HERD_CLIENT_KEY"), "key of --client-cert (env HERD_CLIENT_KEY)")
	root.AddCommand(newServerCmd(g), newAgentCmd(g), newHostCmd(g), newVMCmd(g), newClusterCmd(g), newDevClusterCmd(g), newEventsCmd(g), newOpCmd(g), newPolicyCmd(g), newBalanceCmd(g), newSimulateCmd(g))
	root.AddCommand(newRolloutCmd(g))
	return root
}

// addOutput adds -o/--output to a listing command.
func addOutput(c *cobra.Command, g *globals) {
	c.Flags().StringVarP(&g.output, "output", "o", "table", "output format: table or json")
}

func run(args []string) int {
	return runWith(args, os.Stdout, os.Stderr)
}

func runWith(args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr}
	root := newRoot(g)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var ue usageError
	var ee exitErr
	switch {
	case errors.As(err, &ee):
		return int(ee)
	case errors.As(err, &ue) || isCobraUsage(err):
		fmt.Fprintf(stderr, "herd: %s\n", escLines(err.Error()))
		return exitUsage
	default:
		fmt.Fprintf(stderr, "herd: %s\n", escLines(err.Error()))
		return exitError
	}
}

// exitErr carries an exit status whose message was already printed.
type exitErr int

func (e exitErr) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// isCobraUsage recognises cobra's own argument errors.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "accepts ", "requires at least", "requires exactly", "unknown flag", "unknown shorthand", "flag needs an argument", "invalid argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// read runs a listing: it checks -o, asks the API, and prints JSON or a table.
func read[T any](g *globals, fetch func(context.Context, *api.Client) (T, error), render func(T) error) error {
	asJSON, err := g.json()
	if err != nil {
		return err
	}
	return write(g, func(cx context.Context, c *api.Client) error {
		v, err := fetch(cx, c)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(g.stdout, v)
		}
		return render(v)
	})
}

// write runs a request with a client and a deadline.
func write(g *globals, do func(context.Context, *api.Client) error) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	cx, cancel := ctx()
	defer cancel()
	return do(cx, c)
}
