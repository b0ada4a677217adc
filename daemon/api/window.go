package api

import "time"

// WindowState is a maintenance window as the leader sees it now: open or
// not, and the opening under way or the next one.
type WindowState struct {
	Name string `json:"name"`
	Open bool   `json:"open"`
	// Opens and Closes bound the opening under way (Open) or the next.
	Opens  time.Time `json:"opens"`
	Closes time.Time `json:"closes"`
	// Waiting says what waits for the window to open, if anything does.
	Waiting string `json:"waiting,omitempty"`
}
