// Package bytescan looks at text eight bytes at a time (SWAR: a 64-bit
// word holds eight bytes, and a few integer operations test them all).
// sovra's JSON fast paths use it to skip the runs of plain ASCII that
// most prompts and answers are made of.
package bytescan

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// Word reads s[i:i+8] as a little-endian word.
func Word[T ~string | ~[]byte](s T, i int) uint64 {
	_ = s[i+7]
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
}

// Below is non-zero when a byte of x is below n (n at most 128), and
// zero otherwise; which bits it sets is not to be relied on.
func Below(x, n uint64) uint64 { return (x - ones*n) &^ x & highs }

// Has is non-zero when a byte of x is c.
func Has(x uint64, c byte) uint64 { return Below(x^(ones*uint64(c)), 1) }

// NonASCII is non-zero when a byte of x is 0x80 or above.
func NonASCII(x uint64) uint64 { return x & highs }
