package sms_test

import (
	"strings"
	"testing"

	"github.com/otpd/otpd/sms"
)

func TestSegments(t *testing.T) {
	r := strings.Repeat
	for _, tt := range []struct {
		name     string
		text     string
		encoding string
		segments int
	}{
		{"Empty", "", sms.GSM7, 1},
		{"Short", "123456 is your code", sms.GSM7, 1},
		{"Exactly160", r("a", 160), sms.GSM7, 1},
		{"161", r("a", 161), sms.GSM7, 2},
		{"Exactly306", r("a", 306), sms.GSM7, 2},
		{"307", r("a", 307), sms.GSM7, 3},
		{"OriginBound", "123456 is your Shop code.\n\n@shop.example #123456", sms.GSM7, 1},
		{"FrenchBasic", "Votre code: é è à ù ì ò É Ç", sms.GSM7, 1},
		{"NordicGermanSpanish", "ÅåÄäÖöØøÆæßÑñÜü§¿¡£$¥¤", sms.GSM7, 1},
		{"Greek", "ΔΦΓΛΩΠΨΣΘΞ", sms.GSM7, 1},
		{"ControlsInBasicSet", "a\r\nb", sms.GSM7, 1},
		{"EuroCountsTwo", r("€", 80), sms.GSM7, 1},
		{"EuroOverflows", r("€", 81), sms.GSM7, 2},
		{"Extension159PlusOne", r("a", 159) + "^", sms.GSM7, 2},
		{"ExtensionAll", "^{}[]~\\|€\f", sms.GSM7, 1},
		// 152 septets then an escape pair: the pair must not straddle parts.
		{"EscapeNotSplit", r("a", 152) + "€" + r("a", 152), sms.GSM7, 3},
		{"Backtick", "`", sms.UCS2, 1},
		{"LowercaseCCedilla", "ç", sms.UCS2, 1}, // TS 23.038 maps 0x09 to Ç only
		{"CircumflexE", "ê", sms.UCS2, 1},
		{"ACircumflex", "â", sms.UCS2, 1},
		{"Ellipsis", "…", sms.UCS2, 1},
		{"SmartQuote", "l’heure", sms.UCS2, 1},
		{"Tab", "a\tb", sms.UCS2, 1},
		{"UCS2Exactly70", r("ê", 70), sms.UCS2, 1},
		{"UCS2_71", r("ê", 71), sms.UCS2, 2},
		{"UCS2Exactly134", r("ê", 134), sms.UCS2, 2},
		{"UCS2_135", r("ê", 135), sms.UCS2, 3},
		{"OneNonGSMSwitchesAll", r("a", 69) + "ê", sms.UCS2, 1},
		{"OneNonGSMSwitchesAllLong", r("a", 70) + "ê", sms.UCS2, 2},
		{"Emoji", "😀", sms.UCS2, 1},
		{"Emoji35", r("😀", 35), sms.UCS2, 1},
		{"Emoji36", r("😀", 36), sms.UCS2, 2},
		// 66 units then a surrogate pair: the pair moves to the next part.
		{"SurrogateNotSplit", r("ê", 66) + "😀" + r("ê", 5), sms.UCS2, 2},
		{"SurrogateNotSplit3", r("ê", 66) + "😀" + r("ê", 65) + "ê", sms.UCS2, 3},
		{"InvalidUTF8", "\xff", sms.UCS2, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			enc, n := sms.Segments(tt.text)
			if enc != tt.encoding || n != tt.segments {
				t.Fatalf("Segments=%s,%d, want %s,%d", enc, n, tt.encoding, tt.segments)
			}
		})
	}
}
