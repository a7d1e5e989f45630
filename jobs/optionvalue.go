package jobs

import (
	"encoding/csv"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Value is one option's field of an Options, readable and settable from text:
// a flag's argument, an environment variable. It has the methods of
// pflag.Value, so cmd binds it as a flag without jobs knowing pflag.
//
// Set on a repeatable option (a list, the events map, the membership
// columns) adds to what the field holds; the layers (file, environment,
// flags) each fill a field of their own Options, and the winning layer's
// field replaces the others whole.
type Value struct {
	p any // a pointer to the field
}

// Set parses s into the field (adding to it, for a repeatable option).
func (v Value) Set(s string) error {
	switch p := v.p.(type) {
	case *string:
		*p = s
	case *bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return errors.New("want true or false")
		}
		*p = b
	case *int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return errors.New("want a whole number")
		}
		*p = n
	case *int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return errors.New("want a whole number")
		}
		*p = n
	case *float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return errors.New("want a number")
		}
		*p = f
	case *time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return errors.New("want a duration such as 30s, 5m or 72h")
		}
		*p = d
	case *[]string:
		*p = append(*p, s)
	case *map[string]EventNames:
		name, to, ok := strings.Cut(s, "=")
		name, to = strings.TrimSpace(name), strings.TrimSpace(to)
		if !ok || name == "" || to == "" {
			return errors.New(`want "Segment name=Convertro name"`)
		}
		if *p == nil {
			*p = map[string]EventNames{}
		}
		(*p)[name] = append((*p)[name], to)
	case *MembershipColumns:
		field, col, ok := strings.Cut(s, "=")
		field, col = strings.TrimSpace(field), strings.TrimSpace(col)
		f := p.field(field)
		if !ok || f == nil || col == "" {
			return errors.New("want FIELD=COLUMN, FIELD one of userId, audience, member, deviceId, timestamp")
		}
		*f = col
	default:
		panic(fmt.Sprintf("jobs: option field of type %T has no parser", v.p))
	}
	return nil
}

// String formats the field as Set reads it; a list, map or columns value as
// comma-separated entries.
func (v Value) String() string {
	if v.p == nil {
		return ""
	}
	switch p := v.p.(type) {
	case *string:
		return *p
	case *[]string:
		return strings.Join(*p, ",")
	case *map[string]EventNames:
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(*p)) {
			for _, to := range (*p)[k] {
				parts = append(parts, k+"="+to)
			}
		}
		return strings.Join(parts, ",")
	case *MembershipColumns:
		var parts []string
		for _, f := range membershipFields {
			if c := *p.field(f); c != "" {
				parts = append(parts, f+"="+c)
			}
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(reflect.ValueOf(v.p).Elem().Interface())
}

// Type names the value's kind in --help.
func (v Value) Type() string {
	switch v.p.(type) {
	case *string, *[]string:
		return "string"
	case *bool:
		return "bool"
	case *int, *int64:
		return "int"
	case *float64:
		return "float"
	case *time.Duration:
		return "duration"
	case *map[string]EventNames:
		return "NAME=NAME"
	case *MembershipColumns:
		return "FIELD=COLUMN"
	}
	return "value"
}

// IsBool reports a switch: a flag given without a value means true.
func (v Value) IsBool() bool { _, ok := v.p.(*bool); return ok }

// Repeatable reports an option that takes several values: a repeated flag,
// comma-separated values in its environment variable.
func (v Value) Repeatable() bool {
	switch v.p.(type) {
	case *[]string, *map[string]EventNames, *MembershipColumns:
		return true
	}
	return false
}

// setEnv parses an environment variable's value: one value, or for a
// repeatable option comma-separated values (quoted as in CSV when a value
// holds a comma).
func (v Value) setEnv(s string) error {
	if !v.Repeatable() {
		return v.Set(s)
	}
	r := csv.NewReader(strings.NewReader(s))
	r.TrimLeadingSpace = true
	vals, err := r.Read()
	if err != nil {
		return fmt.Errorf("want comma-separated values: %w", err)
	}
	for _, val := range vals {
		if err := v.Set(val); err != nil {
			return err
		}
	}
	return nil
}

var membershipFields = []string{"userId", "audience", "member", "deviceId", "timestamp"}

func (c *MembershipColumns) field(name string) *string {
	switch name {
	case "userId":
		return &c.UserID
	case "audience":
		return &c.Audience
	case "member":
		return &c.Member
	case "deviceId":
		return &c.DeviceID
	case "timestamp":
		return &c.Timestamp
	}
	return nil
}
