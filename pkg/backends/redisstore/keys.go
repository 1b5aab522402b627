package redisstore

// Key layout. Every counter is one Redis string key:
//
//	<prefix>{<tag>}<key>
//
// where <prefix> is Options.Prefix ("extauthz:" by default, without braces),
// <key> is limiter.Request.Key verbatim (descriptor.AppendKey: algorithm,
// domain, then each descriptor level as length-prefixed fields, long values
// hashed; injective, so two different descriptors never share a key), and
// <tag> is 8 hex digits of the 32-bit FNV-1a hash of <key>. Redis Cluster
// hashes only the text between the first '{' and the next '}', so the tag,
// not any brace that a descriptor value may contain, decides the hash slot:
// keys spread evenly over the slots and a client cannot aim many keys at one
// node by putting braces in a header. The tag is derived from the key, so one
// counter always lives on one slot; since each counter is a single key, the
// state a rule needs together is always on one slot.
//
// The value is limiter.State as four little-endian doubles, "stamp sub
// count prev" (the window index and the counts for the window algorithms,
// the theoretical arrival time as Unix microseconds and a nanosecond
// remainder for the token bucket), written with SET ... PX so that the key
// expires when its state stops mattering (limiter.Limit.Expiry: end of the
// window, end of the next window, or the TAT), rounded up to a millisecond,
// or with KEEPTTL when a window counter is rewritten in the same window.
// The window is in the value, not in the key name, so each counter is
// exactly one key at any time.

const tagLen = 8

// keyLen is the length of the Redis key of k.
func keyLen(prefix, k string) int { return len(prefix) + tagLen + 2 + len(k) }

// appendKey appends the Redis key of request key k to dst.
func appendKey(dst []byte, prefix, k string) []byte {
	dst = append(dst, prefix...)
	dst = append(dst, '{')
	dst = appendTag(dst, k)
	dst = append(dst, '}')
	return append(dst, k...)
}

// appendTag appends the hash tag of k: 8 lower-case hex digits of FNV-1a.
func appendTag(dst []byte, k string) []byte {
	const hexDigits = "0123456789abcdef"
	h := fnv32a(k)
	for shift := 28; shift >= 0; shift -= 4 {
		dst = append(dst, hexDigits[(h>>uint(shift))&0xf])
	}
	return dst
}

// Key returns the Redis key under which a Store with prefix keeps the
// counter of request key k (for tests and debugging with redis-cli).
func Key(prefix, k string) string {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return string(appendKey(make([]byte, 0, keyLen(prefix, k)), prefix, k))
}

func fnv32a(s string) uint32 {
	const (
		offset = 2166136261
		prime  = 16777619
	)
	h := uint32(offset)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= prime
	}
	return h
}

// Slot returns the Redis Cluster hash slot of the Redis key of request key
// k: CRC16 (XMODEM) of its tag, modulo 16384.
func Slot(k string) uint16 {
	var tag [tagLen]byte
	return crc16(appendTag(tag[:0], k)) % 16384
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0), the hash of
// Redis Cluster key slots.
func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
