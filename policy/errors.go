package policy

// FieldError is invalid input, naming the field at fault so that the API can
// answer {"error": ..., "field": ...}.
type FieldError struct {
	Field string
	Msg   string
}

// Error returns "field: message".
func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }
