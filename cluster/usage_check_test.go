package cluster

// Every state of this package's tests tracks its usage, and every command
// applied checks it against a fresh count (verifyUsage).
func init() { checkUsage = true }
