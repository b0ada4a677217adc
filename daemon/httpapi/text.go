package httpapi

import (
	"fmt"
	"reflect"
	"strings"
	"unicode"
	"unicode/utf8"
)

// BadText names the first control character (other than tab) or invalid
// UTF-8 in v, or returns "". Free text that reaches the action log or a
// terminal must not carry escape sequences, bells, NULs or line breaks.
func BadText(v string) string {
	if !utf8.ValidString(v) {
		return "invalid UTF-8"
	}
	for i, r := range v {
		if r != '\t' && unicode.IsControl(r) {
			return fmt.Sprintf("control character %U at byte %d (only tab is allowed)", r, i)
		}
	}
	return ""
}

// checkStrings walks a decoded request body and names the first string
// field (by its JSON name, with list indexes) that holds a control
// character.
func checkStrings(v any) (field, problem string) {
	return walkStrings(reflect.ValueOf(v), "")
}

func walkStrings(v reflect.Value, path string) (string, string) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return "", ""
		}
		return walkStrings(v.Elem(), path)
	case reflect.String:
		if p := BadText(v.String()); p != "" {
			return path, p
		}
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			if f, p := walkStrings(v.Index(i), fmt.Sprintf("%s[%d]", path, i)); p != "" {
				return f, p
			}
		}
	case reflect.Map:
		iter := v.MapRange()
		for iter.Next() {
			key := fmt.Sprint(iter.Key().Interface())
			if p := BadText(key); p != "" {
				return fieldPath(path, "(key)"), p
			}
			if f, p := walkStrings(iter.Value(), fieldPath(path, key)); p != "" {
				return f, p
			}
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			if !sf.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			sub := path
			if !sf.Anonymous || name != "" {
				if name == "" {
					name = sf.Name
				}
				sub = fieldPath(path, name)
			}
			if f, p := walkStrings(v.Field(i), sub); p != "" {
				return f, p
			}
		}
	}
	return "", ""
}

func fieldPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
