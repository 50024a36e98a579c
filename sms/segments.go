package sms

import "unicode/utf8"

// Encodings Segments reports.
const (
	GSM7 = "GSM-7" // the GSM 03.38 default alphabet, 7 bits a character
	UCS2 = "UCS-2" // UTF-16, 16 bits a code unit
)

// Segment sizes: a single message, and each part of a concatenated one
// (whose user data header takes 7 septets or 3 UTF-16 units).
const (
	gsm7Single, gsm7Part = 160, 153
	ucs2Single, ucs2Part = 70, 67
)

// gsm7Basic is the default alphabet of 3GPP TS 23.038 (GSM 03.38), each
// character one septet, by Unicode code point. 0x09 is U+00C7 (Ç), as in
// the standard's table and the Unicode consortium's GSM0338 mapping: a
// lowercase ç is therefore not GSM-7. Some gateways send ç as 0x09 anyway;
// counting it as UCS-2 can only overestimate the length, never garble text.
var gsm7Basic = func() map[rune]bool {
	m := map[rune]bool{}
	for _, r := range "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
		"¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà" {
		m[r] = true
	}
	return m
}()

// gsm7Ext is the extension table: each character is sent as an escape
// (0x1B) and one septet, so it takes two. Form feed (0x0A) is in the table
// too.
var gsm7Ext = map[rune]bool{'\f': true, '^': true, '{': true, '}': true, '\\': true, '[': true, '~': true, ']': true, '|': true, '€': true}

// Segments returns the encoding a phone network uses for text and how many
// SMS segments it takes. The text is GSM-7 when every character is in the
// GSM 03.38 default alphabet or its extension table (^ { } [ ] ~ \ | € and
// form feed take two septets); one other character makes the whole text
// UCS-2, counted in UTF-16 code units (an emoji takes two). One segment
// holds 160 septets or 70 units; a longer text is split into parts of 153
// septets or 67 units, and as phones do, an escape pair or a surrogate pair
// is never split across two parts. An empty text is one segment.
func Segments(text string) (encoding string, segments int) {
	encoding = GSM7
	for _, r := range text {
		if !gsm7Basic[r] && !gsm7Ext[r] {
			encoding = UCS2
			break
		}
	}
	single, part := gsm7Single, gsm7Part
	if encoding == UCS2 {
		single, part = ucs2Single, ucs2Part
	}
	width := func(r rune) int {
		switch {
		case encoding == GSM7 && gsm7Ext[r]:
			return 2
		case encoding == UCS2 && r > 0xFFFF && r <= utf8.MaxRune:
			return 2
		}
		return 1
	}

	total := 0
	for _, r := range text {
		total += width(r)
	}
	if total <= single {
		return encoding, 1
	}
	segments, used := 1, 0
	for _, r := range text {
		w := width(r)
		if used+w > part {
			segments, used = segments+1, 0
		}
		used += w
	}
	return encoding, segments
}
