package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	udiff "github.com/aymanbagabas/go-udiff"
	"github.com/spf13/cobra"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/policy"
)

func newPolicyCmd(g *globals) *cobra.Command {
	p := &cobra.Command{Use: "policy", Short: "The cluster-wide policy: validate, apply, show, diff"}
	validate := &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a policy file here, without a server: exit 0 when valid, 1 with every error (file:line:column)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			doc, err := loadPolicyFile(g, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s: valid (hash %s)\n", args[0], shortHash(doc.Hash()))
			return nil
		},
	}
	apply := &cobra.Command{
		Use:   "apply FILE",
		Short: "Put a policy file in force cluster-wide",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return usageError{err}
			}
			return write(g, func(cx context.Context, c *api.Client) error {
				info, err := c.ApplyPolicy(cx, data, "herd policy apply "+args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "Policy version %d in force (hash %s)\n", info.Version, shortHash(info.Hash))
				return nil
			})
		},
	}
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the policy in force (YAML, defaults filled in)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return write(g, func(cx context.Context, c *api.Client) error {
				y, info, err := c.Policy(cx)
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "# version %d, hash %s\n", info.Version, info.Hash)
				_, err = g.stdout.Write(y)
				return err
			})
		},
	}
	diff := &cobra.Command{
		Use:   "diff FILE",
		Short: "Show how a policy file differs from the policy in force: exit 0 when the same, 1 when different",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			doc, err := loadPolicyFile(g, args[0])
			if err != nil {
				return err
			}
			mine, err := doc.YAML()
			if err != nil {
				return err
			}
			return write(g, func(cx context.Context, c *api.Client) error {
				inForce, info, err := c.Policy(cx)
				if err != nil {
					return err
				}
				if info.Hash == doc.Hash() {
					fmt.Fprintf(g.stdout, "%s is the policy in force (version %d)\n", args[0], info.Version)
					return nil
				}
				unifiedDiff(g.stdout, fmt.Sprintf("in force (version %d)", info.Version), args[0], inForce, mine)
				return exitErr(exitError)
			})
		},
	}
	p.AddCommand(validate, apply, show, diff)
	return p
}

// loadPolicyFile reads and validates a policy file here; every problem is
// printed, one a line with its file:line:column, and the exit status is 1.
func loadPolicyFile(g *globals, path string) (*policy.Document, error) {
	doc, err := policy.LoadFile(path)
	if err != nil {
		fmt.Fprintln(g.stderr, err)
		return nil, exitErr(exitError)
	}
	return doc, nil
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// unifiedDiff writes the line differences between a and b, with three
// lines of context, in the unified format (a changed line's removal before
// its addition, as diff -u prints them).
func unifiedDiff(w io.Writer, nameA, nameB string, a, b []byte) {
	// Both end in one newline: the policy texts differ in content, never in
	// a missing final newline.
	x := strings.TrimRight(string(a), "\n") + "\n"
	y := strings.TrimRight(string(b), "\n") + "\n"
	out := udiff.Unified(nameA, nameB, x, y)
	if out == "" {
		out = fmt.Sprintf("--- %s\n+++ %s\n", nameA, nameB)
	}
	io.WriteString(w, out)
}
