// Package config loads each binary's configuration from the environment.
// One Config type per binary (Gateway, Listener, Emulator), each with its own
// prefix; packages other than cmd never read the environment.
package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-playground/validator/v10"
	"github.com/kelseyhightower/envconfig"
)

// validatable is a config with cross-field rules.
type validatable interface{ Validate() error }

// load rejects unknown variables under prefix and fills c from the rest,
// then checks validator tags and c.Validate, and returns every problem at once, naming variables and
// never the values of secrets.
func load(prefix string, c validatable) error {
	if err := process(prefix, c); err != nil {
		return err
	}
	return validate(prefix, c)
}

// process rejects unknown PREFIX_* variables and fills c from the
// environment (defaults included), naming every variable that does not
// parse, without its value.
func process(prefix string, c any) error {
	if err := envconfig.CheckDisallowed(prefix, c); err != nil {
		return err
	}
	if err := envconfig.Process(prefix, c); err != nil {
		var pe *envconfig.ParseError
		if errors.As(err, &pe) {
			// envconfig stops at the first; name every unparsable variable.
			if all := parseProblems(prefix, c); len(all) > 1 {
				return fmt.Errorf("invalid configuration:\n  %s", strings.Join(all, "\n  "))
			}
			return fmt.Errorf("%s: cannot parse as %s", pe.KeyName, pe.TypeName)
		}
		return err
	}
	return nil
}

// validate checks c's validator tags and c.Validate and returns every
// problem at once, naming variables under prefix and never the values of
// secrets.
func validate(prefix string, c validatable) error {
	var problems []string
	v := validator.New(validator.WithRequiredStructEnabled())
	if err := v.Struct(c); err != nil {
		var ve validator.ValidationErrors
		if !errors.As(err, &ve) {
			return err
		}
		t := reflect.TypeOf(c).Elem()
		for _, fe := range ve {
			problems = append(problems, fmt.Sprintf("%s: %s", envName(prefix, t, fe.StructField()), describe(fe)))
		}
	}
	if err := c.Validate(); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return fmt.Errorf("invalid configuration:\n  %s", strings.Join(problems, "\n  "))
	}
	return nil
}

// parseProblems lists every set variable of c's top-level fields that does
// not parse as its field's type (ints, bools, floats, durations), without
// the value.
func parseProblems(prefix string, c any) []string {
	var out []string
	t := reflect.TypeOf(c).Elem()
	for i := range t.NumField() {
		f := t.Field(i)
		name := prefix + "_" + splitWords(f.Name)
		v, ok := os.LookupEnv(name)
		if !ok || !f.IsExported() {
			continue
		}
		var err error
		switch {
		case f.Type == reflect.TypeOf(time.Duration(0)):
			_, err = time.ParseDuration(v)
		case f.Type.Kind() >= reflect.Int && f.Type.Kind() <= reflect.Int64:
			_, err = strconv.ParseInt(v, 0, f.Type.Bits())
		case f.Type.Kind() >= reflect.Uint && f.Type.Kind() <= reflect.Uint64:
			_, err = strconv.ParseUint(v, 0, f.Type.Bits())
		case f.Type.Kind() == reflect.Bool:
			_, err = strconv.ParseBool(v)
		case f.Type.Kind() == reflect.Float32 || f.Type.Kind() == reflect.Float64:
			_, err = strconv.ParseFloat(v, f.Type.Bits())
		}
		if err != nil {
			out = append(out, fmt.Sprintf("%s: cannot parse as %s", name, f.Type.String()))
		}
	}
	return out
}

// EnvName returns the variable envconfig reads for field of t under prefix
// (split_words naming).
func envName(prefix string, t reflect.Type, field string) string {
	f, ok := t.FieldByName(field)
	if !ok {
		return field
	}
	return prefix + "_" + splitWords(f.Name)
}

// splitWords turns "MaxBodyBytes" into "MAX_BODY_BYTES" like envconfig.
func splitWords(s string) string {
	var b strings.Builder
	r := []rune(s)
	for i, c := range r {
		if i > 0 && isUpper(c) && (!isUpper(r[i-1]) || i+1 < len(r) && !isUpper(r[i+1])) {
			b.WriteByte('_')
		}
		b.WriteRune(c)
	}
	return strings.ToUpper(b.String())
}

func isUpper(c rune) bool { return c >= 'A' && c <= 'Z' }

// describe states a validation failure without the offending value.
func describe(fe validator.FieldError) string {
	switch fe.Tag() {
	case "required":
		return "is required"
	case "min", "gte":
		return "must be at least " + fe.Param()
	case "max", "lte":
		return "must be at most " + fe.Param()
	case "oneof":
		return "must be one of " + fe.Param()
	case "hostname_port":
		return "must be host:port"
	case "url", "http_url":
		return "must be a URL"
	}
	return "fails rule " + fe.Tag()
}

// Usage prints every variable of c with its default and description.
func Usage(prefix string, c any) error {
	return envconfig.Usagef(prefix, c, os.Stderr, envconfig.DefaultTableFormat)
}

// setDefaults sets every field of the struct c points to from its
// `default` tag, as envconfig does with an empty environment, without
// reading the environment. It supports the field types the configs use.
func setDefaults(c any) {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	for i := range t.NumField() {
		def, ok := t.Field(i).Tag.Lookup("default")
		if !ok {
			continue
		}
		f := v.Field(i)
		switch {
		case f.Type() == reflect.TypeOf(time.Duration(0)):
			d, _ := time.ParseDuration(def)
			f.SetInt(int64(d))
		case f.Kind() == reflect.String:
			f.SetString(def)
		case f.Kind() == reflect.Bool:
			b, _ := strconv.ParseBool(def)
			f.SetBool(b)
		case f.Kind() >= reflect.Int && f.Kind() <= reflect.Int64:
			n, _ := strconv.ParseInt(def, 0, 64)
			f.SetInt(n)
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String:
			f.Set(reflect.ValueOf(strings.Split(def, ",")))
		default:
			panic("config: setDefaults: unsupported field " + t.Field(i).Name)
		}
	}
}
