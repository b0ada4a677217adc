package libvirt

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"slices"
	"strings"
)

// unmovableMarkers are the strings a domain XML must contain for
// unmovableReason to find anything; most domains have none, and skip the
// parse.
var unmovableMarkers = []string{"<hostdev", "hostdev'", `hostdev"`, "<filesystem", "<shmem", "<tpm"}

// domainDevices is what unmovableReason reads of a domain XML.
type domainDevices struct {
	Devices struct {
		Hostdevs []struct {
			Type string `xml:"type,attr"`
		} `xml:"hostdev"`
		Interfaces []struct {
			Type string `xml:"type,attr"`
		} `xml:"interface"`
		Filesystems []struct {
			Driver struct {
				Type string `xml:"type,attr"`
			} `xml:"driver"`
			Target struct {
				Dir string `xml:"dir,attr"`
			} `xml:"target"`
		} `xml:"filesystem"`
		Shmems []struct {
			Name string `xml:"name,attr"`
		} `xml:"shmem"`
		TPMs []struct {
			Backend struct {
				Type string `xml:"type,attr"`
			} `xml:"backend"`
		} `xml:"tpm"`
	} `xml:"devices"`
}

// unmovableReason says why a domain with this XML cannot live-migrate:
// devices of the host passed through, or host state shared with the guest.
// Empty when it can.
func unmovableReason(doc string) string {
	if !slices.ContainsFunc(unmovableMarkers, func(m string) bool { return strings.Contains(doc, m) }) {
		return ""
	}
	var d domainDevices
	if err := xml.Unmarshal([]byte(doc), &d); err != nil {
		return fmt.Sprintf("domain XML unreadable: %v", err)
	}
	var reasons []string
	for _, h := range d.Devices.Hostdevs {
		reasons = append(reasons, fmt.Sprintf("host device passthrough (hostdev type %s)", h.Type))
	}
	for _, i := range d.Devices.Interfaces {
		if i.Type == "hostdev" {
			reasons = append(reasons, "network interface passthrough (interface type hostdev)")
		}
	}
	for _, f := range d.Devices.Filesystems {
		driver := f.Driver.Type
		if driver == "" {
			driver = "9p"
		}
		reasons = append(reasons, fmt.Sprintf("host filesystem shared with the guest (%s at %s)", driver, f.Target.Dir))
	}
	for _, s := range d.Devices.Shmems {
		reasons = append(reasons, fmt.Sprintf("shared memory device %s", s.Name))
	}
	for _, t := range d.Devices.TPMs {
		if t.Backend.Type == "passthrough" {
			reasons = append(reasons, "TPM passthrough")
		}
	}
	return strings.Join(reasons, "; ")
}

// domainIdentity is a domain XML's name and UUID.
type domainIdentity struct {
	XMLName xml.Name `xml:"domain"`
	Name    string   `xml:"name"`
	UUID    string   `xml:"uuid"`
}

func readIdentity(doc []byte) (domainIdentity, error) {
	var id domainIdentity
	if err := xml.Unmarshal(doc, &id); err != nil {
		return id, fmt.Errorf("read domain XML: %w", err)
	}
	if id.Name == "" {
		return id, fmt.Errorf("read domain XML: no <name>")
	}
	return id, nil
}

// span is the byte range of one element in a document.
type span struct{ start, end int64 }

// elementSpans finds the elements for which match, given the element
// names from the root's child down and the element's attributes, is true.
func elementSpans(doc []byte, match func(path []string, attrs []xml.Attr) bool) ([]span, error) {
	dec := xml.NewDecoder(bytes.NewReader(doc))
	var path []string
	var starts []int64
	var out []span
	for {
		off := dec.InputOffset()
		tok, err := dec.RawToken()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read domain XML: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			path = append(path, t.Name.Local)
			starts = append(starts, off)
			if len(path) > 1 && match(path[1:], t.Attr) {
				out = append(out, span{start: off, end: -1})
			}
		case xml.EndElement:
			if len(path) == 0 {
				return nil, fmt.Errorf("read domain XML: unbalanced </%s>", t.Name.Local)
			}
			start := starts[len(starts)-1]
			path, starts = path[:len(path)-1], starts[:len(starts)-1]
			for i := range out {
				if out[i].start == start && out[i].end < 0 {
					out[i].end = dec.InputOffset()
				}
			}
		}
	}
}

// replaceSpans returns doc with each span replaced by with.
func replaceSpans(doc []byte, spans []span, with string) []byte {
	var b bytes.Buffer
	var at int64
	for _, s := range spans {
		if s.start < at || s.end < s.start {
			continue // nested in one already replaced, or never closed
		}
		b.Write(doc[at:s.start])
		b.WriteString(with)
		at = s.end
	}
	b.Write(doc[at:])
	return b.Bytes()
}

// withName sets the domain's <name>.
func withName(doc []byte, name string) ([]byte, error) {
	spans, err := elementSpans(doc, func(path []string, _ []xml.Attr) bool {
		return len(path) == 1 && path[0] == "name"
	})
	if err != nil {
		return nil, err
	}
	if len(spans) != 1 {
		return nil, fmt.Errorf("domain XML has %d <name> elements", len(spans))
	}
	var esc strings.Builder
	if err := xml.EscapeText(&esc, []byte(name)); err != nil {
		return nil, err
	}
	return replaceSpans(doc, spans, "<name>"+esc.String()+"</name>"), nil
}
