package extract

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/limiter"
	"github.com/extauthz/extauthz/pkg/secret"
)

// KeyListing lists one API key (authz.api_keys): exactly one of Key and
// KeySHA256 is set.
type KeyListing struct {
	// ID names the key wherever it shows: descriptors, counters, headers.
	ID string `yaml:"id"`
	// Key is the key in clear (redacted in /config); prefer KeySHA256, the
	// hex SHA-256 of the key (printf %s "$KEY" | sha256sum).
	Key       secret.String `yaml:"key"`
	KeySHA256 string        `yaml:"key_sha256"`
	// Tier and Tenant of the key (optional).
	Tier   string `yaml:"tier"`
	Tenant string `yaml:"tenant"`
	// Expires ends the listing (RFC 3339; absent: never).
	Expires time.Time `yaml:"expires"`
	// Overrides replace rule limits for this key.
	Overrides []Override `yaml:"overrides"`
}

// TenantListing lists one tenant (authz.tenants).
type TenantListing struct {
	Name string `yaml:"name"`
	Tier string `yaml:"tier"`
	// Hosts are the tenant's hosts, for tenant sources with host: listed.
	Hosts []string `yaml:"hosts"`
	// Expires ends the listing (RFC 3339; absent: never).
	Expires   time.Time  `yaml:"expires"`
	Overrides []Override `yaml:"overrides"`
}

// Override replaces the limit of one rule (by rate_limit name), or of every
// rule (rule absent), for descriptors carrying the identity. The rule's
// algorithm stays.
type Override struct {
	Rule            string    `yaml:"rule"`
	Unit            string    `yaml:"unit"`
	RequestsPerUnit *int64    `yaml:"requests_per_unit"`
	Expires         time.Time `yaml:"expires"`
}

// ListIdentities checks the API keys and tenants that s lists and builds
// their Identities, with s's descriptor keys. It reports every problem at
// once, each a *field.Error whose path is relative to s ("api_keys[2].id")
// and which matches ErrInvalidIdentity. Whether an override's rule exists
// is the caller's to check.
func ListIdentities(s Settings) (*Identities, error) {
	ps := &problems{kind: ErrInvalidIdentity}
	opts := IdentitiesOptions{APIKeyKey: s.APIKey.DescriptorKey, TenantKey: s.Tenant.DescriptorKey}
	for i, k := range s.APIKeys {
		p := fmt.Sprintf("api_keys[%d]", i)
		l := APIKeyListing{
			Digest:   keyDigest(&k, p, ps),
			Identity: Identity{ID: k.ID, Tier: k.Tier, Tenant: k.Tenant, Expires: k.Expires},
		}
		if l.Digest == ([sha256.Size]byte{}) {
			// Keep the index aligned with a digest no real key has.
			l.Digest = sha256.Sum256(fmt.Appendf(nil, "\x00invalid %d", i))
		}
		l.Overrides = limitOverrides(k.Overrides, p, ps)
		opts.APIKeys = append(opts.APIKeys, l)
	}
	for i, t := range s.Tenants {
		opts.Tenants = append(opts.Tenants, Identity{
			ID: t.Name, Tier: t.Tier, Hosts: t.Hosts, Expires: t.Expires,
			Overrides: limitOverrides(t.Overrides, fmt.Sprintf("tenants[%d]", i), ps),
		})
	}
	ids, err := NewIdentities(opts)
	ps.errs = append(ps.errs, err)
	if err := ps.err(); err != nil {
		return nil, err
	}
	return ids, nil
}

// keyDigest returns the digest k lists, the zero digest when it has none.
func keyDigest(k *KeyListing, p string, ps *problems) [sha256.Size]byte {
	switch {
	case k.Key != "" && k.KeySHA256 != "":
		ps.add(p, "set key or key_sha256, not both")
	case k.Key != "":
		return HashAPIKey(string(k.Key))
	case k.KeySHA256 != "":
		var d [sha256.Size]byte
		b, err := hex.DecodeString(k.KeySHA256)
		if err != nil || len(b) != sha256.Size {
			ps.add(p+".key_sha256", "expected 64 hex digits, the SHA-256 of the key (printf %%s \"$KEY\" | sha256sum)")
			break
		}
		copy(d[:], b)
		return d
	default:
		ps.add(p, "missing: set key_sha256 (the hex SHA-256 of the key) or key")
	}
	return [sha256.Size]byte{}
}

// limitOverrides checks and converts the overrides of the identity at p,
// leaving out the invalid ones.
func limitOverrides(os []Override, p string, ps *problems) []descriptor.LimitOverride {
	var out []descriptor.LimitOverride
	for j, o := range os {
		op := fmt.Sprintf("%s.overrides[%d]", p, j)
		unit, ok := descriptor.ParseUnit(o.Unit)
		switch {
		case o.Unit == "":
			ps.add(op+".unit", "missing: expected one of %s", descriptor.UnitNames)
			continue
		case !ok:
			ps.add(op+".unit", "unknown unit %q: expected one of %s", o.Unit, descriptor.UnitNames)
			continue
		}
		n, err := descriptor.CheckRequestsPerUnit(o.RequestsPerUnit)
		if err != nil {
			ps.add(op+".requests_per_unit", "%v", err)
			continue
		}
		out = append(out, descriptor.LimitOverride{
			Rule:    o.Rule,
			Limit:   limiter.Limit{Requests: n, Period: unit.Period()},
			Unit:    unit,
			Expires: o.Expires,
		})
	}
	return out
}
