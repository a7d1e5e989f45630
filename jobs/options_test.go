package jobs

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestOptionTableComplete fails when an option lacks its flag, key,
// environment variable, default, help or subcommands, when two options share
// one of them, and when a field of Options has no option (or two).
func TestOptionTableComplete(t *testing.T) {
	seen := map[string]string{}
	unique := func(kind, v, name string) {
		if v == "" {
			t.Errorf("option %q has no %s", name, kind)
			return
		}
		if other, dup := seen[kind+" "+v]; dup {
			t.Errorf("options %q and %q share the %s %q", other, name, kind, v)
		}
		seen[kind+" "+v] = name
	}
	var o Options
	fields := map[uintptr]string{}
	for _, opt := range Table() {
		unique("flag", opt.Name, opt.Name)
		unique("key", opt.Key, opt.Name)
		unique("env", opt.Env(), opt.Name)
		if opt.FlagAlias != "" {
			unique("flag", opt.FlagAlias, opt.Name)
		}
		if opt.KeyAlias != "" {
			unique("key", opt.KeyAlias, opt.Name)
		}
		if opt.Help == "" {
			t.Errorf("--%s has no help", opt.Name)
		}
		if len(opt.For) == 0 {
			t.Errorf("--%s is taken by no subcommand", opt.Name)
		}
		if opt.Field == nil {
			t.Errorf("--%s has no field", opt.Name)
			continue
		}
		p := reflect.ValueOf(opt.Field(&o))
		if opt.Default == nil {
			t.Errorf("--%s has no default", opt.Name)
		} else if dt, ft := reflect.TypeOf(opt.Default), p.Elem().Type(); dt != ft {
			t.Errorf("--%s default is a %s, its field a %s", opt.Name, dt, ft)
		}
		if other, dup := fields[p.Pointer()]; dup {
			t.Errorf("--%s and --%s set the same field", opt.Name, other)
		}
		fields[p.Pointer()] = opt.Name
	}
	if err := Defaults().Check(); err != nil {
		t.Errorf("the defaults are out of range: %v", err)
	}
	v := reflect.ValueOf(&o).Elem()
	for i := range v.NumField() {
		if _, ok := fields[v.Field(i).Addr().Pointer()]; !ok {
			t.Errorf("Options.%s has no option in the table", v.Type().Field(i).Name)
		}
	}
}

// TestWithDefaultsFromTable: a library caller's zero Options takes the
// table's defaults, and the run's defaults are the table's.
func TestWithDefaultsFromTable(t *testing.T) {
	o := Options{}.withDefaults()
	if o.Concurrency != 64 || o.Kind != "backfill" || o.State != "./.convertro-state" || o.Lookback.Hours() != 72 {
		t.Errorf("defaults %+v", o)
	}
	set := Options{Concurrency: 3}.withDefaults()
	if set.Concurrency != 3 {
		t.Errorf("withDefaults replaced a set value: %d", set.Concurrency)
	}
}

// TestKinds: every kind is registered once, --job's help and the refusal of
// an unknown kind name each of them, and each is accepted by validation.
func TestKinds(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range kinds {
		if k.Name == "" || seen[k.Name] {
			t.Errorf("kind %q: empty or registered twice", k.Name)
		}
		seen[k.Name] = true
		if !strings.Contains(Lookup("kind").Help, k.Name) {
			t.Errorf("--job help %q does not name %s", Lookup("kind").Help, k.Name)
		}
		o := Defaults()
		o.Kind, o.Sources = k.Name, []string{"x"}
		if err := o.validate(); err != nil {
			t.Errorf("kind %s refused: %v", k.Name, err)
		}
	}
	if len(seen) != 3 || Defaults().Kind != kinds[0].Name {
		t.Errorf("kinds %v, default %q: want backfill (the default), audience, migration", seen, Defaults().Kind)
	}
	o := Defaults()
	o.Kind, o.Sources = "backfil", []string{"x"}
	err := o.validate()
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("unknown kind: err %v, want ErrConfig", err)
	}
	for name := range seen {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("unknown kind: message %q does not name %s", err, name)
		}
	}
}
