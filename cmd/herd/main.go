// Command herd is Herd's one binary: the server daemon and the CLI.
package main

import (
	"os"
)

func main() { os.Exit(run(os.Args[1:])) }
