package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"

	"github.com/go-playground/validator/v10"
)

// validatable is a request DTO with cross-field rules beyond its tags.
type validatable interface{ Validate() error }

// newValidator builds the one validator: JSON field names in errors, and
// the "msgid" rule.
func newValidator() *validator.Validate {
	v := validator.New(validator.WithRequiredStructEnabled())
	v.RegisterTagNameFunc(func(f reflect.StructField) string {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			return ""
		}
		return name
	})
	_ = v.RegisterValidation("msgid", func(fl validator.FieldLevel) bool {
		return idPattern.MatchString(fl.Field().String())
	})
	return v
}

// readBody reads the whole body up to limit bytes. An oversize body is a
// 413, an empty one a 400.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, err
		}
		return nil, invalid("cannot read the request body")
	}
	if len(b) == 0 {
		return nil, invalid("request body is empty")
	}
	return b, nil
}

// decodeJSON strictly decodes one JSON object of type T from r's body:
// at most limit bytes (413), no unknown fields, no trailing data, then the
// validator's tags and T's Validate. Every failure is a *problem (or a
// *http.MaxBytesError) that names the offending fields.
func decodeJSON[T any, PT interface {
	*T
	validatable
}](w http.ResponseWriter, r *http.Request, v *validator.Validate, limit int64) (T, error) {
	var dst T
	body, err := readBody(w, r, limit)
	if err != nil {
		return dst, err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&dst); err != nil {
		return dst, jsonProblem(err)
	}
	if err := dec.Decode(&struct{}{}); err != io.EOF {
		return dst, invalid("request body must hold exactly one JSON value; found data after it")
	}
	p := invalid("request body is invalid")
	if err := v.StructCtx(r.Context(), &dst); err != nil {
		var ve validator.ValidationErrors
		if !errors.As(err, &ve) {
			return dst, err
		}
		for _, fe := range ve {
			p.Errors = append(p.Errors, fieldError{Pointer: pointerFromNamespace(fe.Namespace()), Detail: describeField(fe)})
		}
	}
	// Cross-field rules run too, so one response lists every problem.
	if err := PT(&dst).Validate(); err != nil {
		var vp *problem
		if !errors.As(err, &vp) || vp.Code != codeInvalidArgument {
			return dst, err
		}
		if len(vp.Errors) == 0 && len(p.Errors) == 0 {
			return dst, vp
		}
		p.Errors = append(p.Errors, vp.Errors...)
	}
	if len(p.Errors) > 0 {
		return dst, p
	}
	return dst, nil
}

// jsonProblem explains a json decoding error without echoing the input.
func jsonProblem(err error) *problem {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return invalid(fmt.Sprintf("request body is not valid JSON (at byte %d)", se.Offset))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("request body is not valid JSON (unexpected end)")
	case errors.As(err, &te):
		if te.Field == "" {
			return invalid("request body must be a JSON object")
		}
		return invalid("request body is invalid", fieldError{Pointer: pointer(strings.Split(te.Field, ".")...), Detail: "must be a JSON " + jsonKind(te.Type)})
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.TrimPrefix(err.Error(), "json: unknown field ")
		if n, uerr := unquote(name); uerr == nil {
			name = n
		}
		return invalid("request body is invalid", fieldError{Pointer: pointer(name), Detail: "is not a known field"})
	}
	return invalid("request body is not valid JSON")
}

func unquote(s string) (string, error) {
	var out string
	err := json.Unmarshal([]byte(s), &out)
	return out, err
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Map, reflect.Struct:
		return "object"
	}
	return "number"
}

// pointer builds a JSON Pointer in URI-fragment form from field names.
func pointer(names ...string) string {
	var b strings.Builder
	b.WriteByte('#')
	for _, n := range names {
		n = strings.ReplaceAll(n, "~", "~0")
		n = strings.ReplaceAll(n, "/", "~1")
		b.WriteByte('/')
		b.WriteString(fragmentEscape(n))
	}
	return b.String()
}

// fragmentEscape percent-encodes what may not appear in a URI fragment.
func fragmentEscape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~!$&'()*+,;=:@/?", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// pointerFromNamespace turns validator's "sendRequest.id" into "#/id".
func pointerFromNamespace(ns string) string {
	parts := strings.Split(ns, ".")
	if len(parts) > 1 {
		parts = parts[1:]
	}
	return pointer(parts...)
}

// describeField states a validation failure without the offending value.
func describeField(fe validator.FieldError) string {
	switch fe.Tag() {
	case "required":
		return "is required"
	case "max":
		return "must be at most " + fe.Param() + " characters"
	case "min":
		return "must be at least " + fe.Param() + " characters"
	case "msgid":
		return "must be 1-128 characters of A-Z a-z 0-9 . _ : -"
	}
	return "fails rule " + fe.Tag()
}
