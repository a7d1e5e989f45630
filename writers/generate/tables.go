package generate

import (
	"iter"
	"math/rand/v2"
	"strconv"
	"time"
	"unsafe"

	"github.com/convertro-etl/convertro-etl/internal/segment"
)

// Event is one logical Segment message as generated, before any layout
// decides its names, nesting and physical types. Empty strings and invalid
// Numbers, Times and Bools are NULL. Times are whole milliseconds, because
// the upper layout stores TIMESTAMP(MILLIS) and every layout must carry the
// same instants.
type Event struct {
	Table string       // warehouse table: application_installed, identifies, order_completed, pages, tracks
	Type  segment.Type // identify, track or page
	Day   time.Time    // partition day (UTC midnight)
	Hour  int          // partition hour

	MessageID, UserID, AnonymousID string
	Event, EventText               string // slug and name; empty for identifies and pages

	Timestamp, OriginalTimestamp, SentAt, ReceivedAt, UUIDTs segment.Time

	Context Context

	// order_completed
	OrderID                 string
	Total, Revenue          segment.Number // whole cents, so every encoding reads back the same float
	Currency                string
	Repeat                  segment.Bool
	Products                string // JSON text, possibly truncated
	Coupon                  string
	Discount, Shipping, Tax segment.Number
	// application_installed
	Version, Build string
	// pages
	Name, Path, URL, Title string
	// identifies (traits)
	Email, TraitName, Plan string

	IntegrationsAll, IntegrationsConvertro segment.Bool

	// TotalText and RevenueText are total and revenue as a file that stores
	// them as text holds them (the warehouse order_completed files of the
	// second day): "49.99", "$1,299.50", " 12.5 ", or "NA" where the value is
	// absent (empty: NULL).
	TotalText, RevenueText string
}

// Context is the flattened context object.
type Context struct {
	DeviceID, DeviceType, DeviceModel, DeviceManufacturer string
	IP, UserAgent                                         string
	LibraryName, LibraryVersion                           string
	OSName, OSVersion                                     string
	AppName, AppVersion, AppBuild                         string
	Locale, Timezone                                      string
	ScreenWidth, ScreenHeight                             int64 // 0 = NULL
	NetworkWifi                                           segment.Bool
	NetworkCarrier                                        string
	CampaignSource, CampaignMedium, CampaignName          string
	PagePath, PageURL, PageReferrer                       string
}

// table is one logical table. Generation runs tables in this order (the
// warehouse folder order), then days, then hours.
type table struct {
	name            string
	typ             segment.Type
	weight          int
	event, eventTxt string
	integrations    bool // some of its files carry integrations_all/integrations_convertro
}

// The tracks table holds only events that have no table of their own: a
// real warehouse also copies every Order Completed and Application Installed
// into tracks, but the job would have to drop those copies again, and a
// generator that writes each message once keeps the expected request count
// simple.
var tables = []table{
	{name: "application_installed", typ: segment.TypeTrack, weight: 5, event: "application_installed", eventTxt: "Application Installed"},
	{name: "identifies", typ: segment.TypeIdentify, weight: 20, integrations: true},
	{name: "order_completed", typ: segment.TypeTrack, weight: 25, event: "order_completed", eventTxt: "Order Completed", integrations: true},
	{name: "pages", typ: segment.TypePage, weight: 15},
	{name: "tracks", typ: segment.TypeTrack, weight: 35, integrations: true},
}

// trackEvents are the events of the tracks table, with their weights. The
// demo's events map maps some of them and not others.
var trackEvents = []struct {
	slug, text string
	weight     int
}{
	{"product_viewed", "Product Viewed", 45},
	{"added_to_cart", "Added to Cart", 20},
	{"checkout_started", "Checkout Started", 12},
	{"signed_up", "Signed Up", 8},
	{"promotion_clicked", "Promotion Clicked", 15},
}

// hourWeights is a daily traffic curve (UTC): quiet nights, busy evenings.
var hourWeights = [24]int{4, 3, 2, 2, 2, 3, 4, 6, 8, 9, 10, 10, 11, 11, 10, 10, 11, 12, 14, 16, 16, 14, 10, 6}

// carriesIntegrations says whether the files of a table's partition carry
// the integrations columns: most do, some do not, so that a column present
// in some files and absent in others is part of every export.
func carriesIntegrations(t *table, day, hour int) bool {
	return t.integrations && (day*24+hour)%4 != 3
}

// apportion splits n into len(weights) parts proportional to weights, by
// largest remainder (ties to the lower index), so that the parts sum to n.
func apportion(n int, weights []int) []int {
	total := 0
	for _, w := range weights {
		total += w
	}
	out := make([]int, len(weights))
	rem := make([]int, len(weights))
	left := n
	for i, w := range weights {
		out[i] = n * w / total
		rem[i] = n * w % total
		left -= out[i]
	}
	for ; left > 0; left-- {
		best := 0
		for i := range rem {
			if rem[i] > rem[best] {
				best = i
			}
		}
		out[best]++
		rem[best] = -1
	}
	return out
}

// partition is one (table, day, hour) and its row count.
type partition struct {
	table *table
	ti    int
	day   int
	hour  int
	rows  int
}

// partitions lists every non-empty partition in generation order.
func partitions(o Options) []partition {
	w := make([]int, len(tables))
	for i := range tables {
		w[i] = tables[i].weight
	}
	perTable := apportion(o.Rows, w)
	slots := make([]int, 0, o.Days*24)
	for range o.Days {
		slots = append(slots, hourWeights[:]...)
	}
	var out []partition
	for ti := range tables {
		for s, n := range apportion(perTable[ti], slots) {
			if n > 0 {
				out = append(out, partition{table: &tables[ti], ti: ti, day: s / 24, hour: s % 24, rows: n})
			}
		}
	}
	return out
}

// Events yields the logical events Generate writes for o: by table
// (application_installed, identifies, order_completed, pages, tracks), day,
// hour, then row, which is the order of the rows within each file and of
// the files by table and path. The Layout is ignored: every layout holds
// these events. The strings it yields stay valid.
func Events(o Options) iter.Seq[Event] {
	return func(yield func(Event) bool) {
		o, err := o.normalize(false)
		if err != nil {
			return
		}
		g := newGenerator(o)
		var e Event
		for _, p := range partitions(o) {
			g.begin(p)
			for range p.rows {
				g.next(&e)
				if !yield(e) {
					return
				}
			}
		}
	}
}

// splitmix64 mixes a 64-bit value; it derives independent seeds.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// generator makes the events of one partition after another. Each
// partition has its own PCG stream seeded from (Seed, table, day, hour), so
// the content of a partition depends only on the seed and its row count.
type generator struct {
	o     Options
	seed  uint64
	users int
	rng   *rand.Rand
	pcg   *rand.PCG
	p     partition
	hour0 int64 // partition start, micros
	day   time.Time
	str   strArena
	buf   []byte
}

func newGenerator(o Options) *generator {
	pcg := rand.NewPCG(0, 0)
	return &generator{
		o:     o,
		seed:  uint64(o.Seed),
		users: max(64, o.Rows/6),
		pcg:   pcg,
		rng:   rand.New(pcg),
	}
}

func (g *generator) begin(p partition) {
	g.p = p
	g.pcg.Seed(splitmix64(g.seed), splitmix64(uint64(p.ti)<<40|uint64(p.day)<<8|uint64(p.hour)))
	g.day = g.o.Start.AddDate(0, 0, p.day)
	g.hour0 = g.day.UnixMicro() + int64(p.hour)*3600e6
}

// strArena hands out immutable strings carved from append-only chunks: one
// allocation per chunk instead of one per string. A chunk is never written
// again once a string points into it.
type strArena struct{ chunk []byte }

func (a *strArena) str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if cap(a.chunk)-len(a.chunk) < len(b) {
		a.chunk = make([]byte, 0, max(32<<10, len(b)))
	}
	s := len(a.chunk)
	a.chunk = append(a.chunk, b...)
	return unsafe.String(&a.chunk[s], len(b))
}

const hexDigits = "0123456789abcdef"

// appendUUID appends a version-4 UUID made of hi and lo.
func appendUUID(b []byte, hi, lo uint64, upper bool) []byte {
	hi = hi&^(0xf<<12) | 0x4<<12
	lo = lo&^(0x3<<62) | 0x2<<62
	digits := hexDigits
	if upper {
		digits = "0123456789ABCDEF"
	}
	for i := 15; i >= 0; i-- {
		b = append(b, digits[hi>>(uint(i)*4)&0xf])
		if i == 8 || i == 4 {
			b = append(b, '-')
		}
	}
	b = append(b, '-')
	for i := 15; i >= 0; i-- {
		b = append(b, digits[lo>>(uint(i)*4)&0xf])
		if i == 12 {
			b = append(b, '-')
		}
	}
	return b
}

// user is what every message of one person shares: derived from the user's
// index by hashing, so nothing is stored per user.
type user struct {
	userID, anonymousID string
	ios                 bool
	deviceID            string
	model, maker        string
	width, height       int64
	osVersion           string
	appVersion, build   string
	locale, timezone    string
	carrier             string
	ip                  string
	first, last         string
	plan                string
}

var (
	iosModels = []struct {
		model string
		w, h  int64
	}{{"iPhone15,2", 393, 852}, {"iPhone14,5", 390, 844}, {"iPhone16,1", 393, 852}, {"iPhone13,2", 390, 844}, {"iPad13,1", 820, 1180}}
	androidModels = []struct {
		maker, model string
		w, h         int64
	}{{"Google", "Pixel 8", 412, 915}, {"samsung", "SM-S911B", 360, 780}, {"samsung", "SM-A546B", 384, 854}, {"OnePlus", "CPH2449", 412, 919}, {"Xiaomi", "2201117TG", 393, 873}}
	iosVersions     = []string{"17.2.1", "17.4", "16.7.5", "17.1.2"}
	androidVersions = []string{"14", "13", "12", "11"}
	appVersions     = []struct{ v, b string }{{"4.12.0", "4120"}, {"4.11.2", "4112"}, {"4.10.0", "4100"}, {"5.0.0", "5000"}}
	locales         = []string{"en-US", "en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "en-CA"}
	timezones       = []string{"America/New_York", "America/Chicago", "America/Los_Angeles", "Europe/London", "Europe/Berlin", "Europe/Paris"}
	carriers        = []string{"Verizon", "T-Mobile", "AT&T", "Vodafone", "O2", ""}
	firstNames      = []string{"Ada", "Grace", "Alan", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Radia", "Edsger"}
	lastNames       = []string{"Lovelace", "Hopper", "Turing", "Torvalds", "Hamilton", "Thompson", "Liskov", "Ritchie", "Perlman", "Dijkstra"}
	plans           = []string{"free", "free", "pro", "business"}
	campaigns       = []struct{ source, medium, name string }{{"google", "cpc", "spring_sale"}, {"facebook", "paid_social", "retargeting"}, {"newsletter", "email", "weekly_digest"}, {"tiktok", "paid_social", "launch"}}
	currencies      = []string{"USD", "USD", "USD", "USD", "EUR", "GBP", "CAD"}
	coupons         = []string{"SPRING10", "WELCOME5", "FREESHIP", "VIP20"}
	productNames    = []string{"Trail Runner", "Wool Socks", "Rain Jacket", "Water Bottle", "Headlamp", "Camp Mug"}
	pageNames       = []struct{ name, path, title string }{{"Home", "/", "Acme Shop"}, {"Product", "/products/", "Acme Shop – Product"}, {"Cart", "/cart", "Acme Shop – Cart"}, {"Search", "/search", "Acme Shop – Search"}, {"Checkout", "/checkout", "Acme Shop – Checkout"}}
	referrers       = []string{"", "", "https://www.google.com/", "https://t.co/", "https://news.example.org/article"}
)

func (g *generator) user(k int) user {
	var p rand.PCG
	p.Seed(splitmix64(g.seed^0x5eed), uint64(k))
	r := func(n int) int { return int(p.Uint64() % uint64(n)) }
	var u user
	b := g.buf[:0]
	b = append(b, "usr_"...)
	b = strconv.AppendUint(b, 1000000+uint64(k)*7919%9000000, 10)
	u.userID = g.str.str(b)
	b = appendUUID(b[:0], p.Uint64(), p.Uint64(), false)
	u.anonymousID = g.str.str(b)
	u.ios = r(100) < 60
	if u.ios {
		m := iosModels[r(len(iosModels))]
		u.model, u.maker, u.width, u.height = m.model, "Apple", m.w, m.h
		u.osVersion = iosVersions[r(len(iosVersions))]
		b = appendUUID(b[:0], p.Uint64(), p.Uint64(), true) // IDFV
	} else {
		m := androidModels[r(len(androidModels))]
		u.model, u.maker, u.width, u.height = m.model, m.maker, m.w, m.h
		u.osVersion = androidVersions[r(len(androidVersions))]
		v := p.Uint64()
		b = b[:0]
		for i := 15; i >= 0; i-- { // ANDROID_ID: 16 hex digits
			b = append(b, hexDigits[v>>(uint(i)*4)&0xf])
		}
	}
	u.deviceID = g.str.str(b)
	av := appVersions[r(len(appVersions))]
	u.appVersion, u.build = av.v, av.b
	u.locale = locales[r(len(locales))]
	u.timezone = timezones[r(len(timezones))]
	u.carrier = carriers[r(len(carriers))]
	v := p.Uint64()
	b = b[:0]
	if v%10 == 0 {
		b = append(b, "2600:1700:"...)
		b = strconv.AppendUint(b, v>>8&0xffff, 16)
		b = append(b, ':')
		b = strconv.AppendUint(b, v>>24&0xffff, 16)
		b = append(b, "::"...)
		b = strconv.AppendUint(b, v>>40&0xffff, 16)
	} else {
		b = strconv.AppendUint(b, 24+v>>8%180, 10)
		for s := 16; s <= 32; s += 8 {
			b = append(b, '.')
			b = strconv.AppendUint(b, v>>uint(s)&0xff, 10)
		}
	}
	u.ip = g.str.str(b)
	u.first, u.last = firstNames[r(len(firstNames))], lastNames[r(len(lastNames))]
	u.plan = plans[r(len(plans))]
	g.buf = b
	return u
}

// chance reports true with probability per10000/10000.
func (g *generator) chance(per10000 int) bool { return g.rng.IntN(10000) < per10000 }

// cents draws an order amount in cents: mostly tens of dollars, a tail into
// the thousands (so text amounts need thousands separators).
func (g *generator) cents() int64 {
	switch x := g.rng.IntN(1000); {
	case x < 10:
		return 0
	case x < 20:
		return -int64(500 + g.rng.IntN(20000)) // refund
	case x < 60:
		return int64(100000 + g.rng.IntN(400000))
	default:
		return int64(499 + g.rng.IntN(25000))
	}
}

func centsNumber(c int64) segment.Number { return segment.Num(float64(c) / 100) }

// next fills e with the next event of the current partition. Nothing here
// depends on the layout (values a layout may not store, such as
// integrations in files without those columns, are drawn and then cleared),
// so Events and Generate agree for every layout.
func (g *generator) next(e *Event) {
	*e = Event{}
	t := g.p.table
	rng := g.rng
	e.Table, e.Type, e.Day, e.Hour = t.name, t.typ, g.day, g.p.hour

	b := appendUUID(g.buf[:0], rng.Uint64(), rng.Uint64(), false)
	e.MessageID = g.str.str(b)
	g.buf = b

	// A few heavy users, a long tail.
	f := rng.Float64()
	u := g.user(int(f * f * float64(g.users)))
	anonymous := 0
	switch t.name {
	case "identifies":
		anonymous = 1000
	case "tracks":
		anonymous = 2500
	case "order_completed":
		anonymous = 300
	case "application_installed":
		anonymous = 8000
	case "pages":
		anonymous = 4000
	}
	if !g.chance(anonymous) {
		e.UserID = u.userID
	}
	e.AnonymousID = u.anonymousID

	// Times: the true instant, the device clock's skew, the send delay
	// (sometimes hours, for offline batches), the network latency; the
	// timestamp is Segment's corrected time.
	trueMs := g.hour0/1000 + int64(rng.IntN(3600_000-1000))
	skew := int64(rng.IntN(6001) - 3000)
	if g.chance(500) {
		skew = int64(rng.IntN(1_200_001) - 600_000)
	}
	delay := int64(rng.IntN(30_000))
	if g.chance(1000) {
		delay = int64(rng.IntN(7_200_000))
	}
	latency := int64(50 + rng.IntN(750))
	orig := trueMs + skew
	e.OriginalTimestamp = segment.At(orig * 1000)
	e.SentAt = segment.At((orig + delay) * 1000)
	e.ReceivedAt = segment.At((trueMs + delay + latency) * 1000)
	e.Timestamp = segment.At((trueMs + latency) * 1000)
	e.UUIDTs = segment.At((trueMs + delay + latency + int64(300_000+rng.IntN(5_400_000))) * 1000)
	switch x := rng.IntN(10000); {
	case x < 2:
		e.Timestamp, e.OriginalTimestamp, e.SentAt, e.ReceivedAt = segment.Time{}, segment.Time{}, segment.Time{}, segment.Time{}
	case x < 50:
		e.Timestamp = segment.Time{}
	}

	c := &e.Context
	if !g.chance(300) {
		c.DeviceID = u.deviceID
	}
	c.DeviceModel, c.DeviceManufacturer = u.model, u.maker
	c.ScreenWidth, c.ScreenHeight = u.width, u.height
	c.AppName, c.AppVersion, c.AppBuild = "Acme Shop", u.appVersion, u.build
	c.Locale, c.Timezone = u.locale, u.timezone
	c.NetworkCarrier = u.carrier
	c.NetworkWifi = segment.False + segment.Bool(rng.IntN(2))
	if u.ios {
		c.DeviceType, c.OSName, c.OSVersion = "ios", "iOS", u.osVersion
		c.LibraryName, c.LibraryVersion = "analytics-ios", "4.1.8"
	} else {
		c.DeviceType, c.OSName, c.OSVersion = "android", "Android", u.osVersion
		c.LibraryName, c.LibraryVersion = "analytics-android", "4.11.3"
	}
	if !g.chance(200) {
		c.IP = u.ip
	}
	if !g.chance(1500) {
		b := g.buf[:0]
		if u.ios {
			b = append(b, "AcmeShop/"...)
			b = append(b, u.appVersion...)
			b = append(b, " (com.acme.shop; build:"...)
			b = append(b, u.build...)
			b = append(b, "; iOS "...)
			b = append(b, u.osVersion...)
			b = append(b, ") Alamofire/5.8.0"...)
		} else {
			b = append(b, "Dalvik/2.1.0 (Linux; U; Android "...)
			b = append(b, u.osVersion...)
			b = append(b, "; "...)
			b = append(b, u.model...)
			b = append(b, " Build/UQ1A.240205.004)"...)
		}
		c.UserAgent = g.str.str(b)
		g.buf = b
	}
	if cp := rng.IntN(20); cp < len(campaigns) {
		c.CampaignSource, c.CampaignMedium, c.CampaignName = campaigns[cp].source, campaigns[cp].medium, campaigns[cp].name
	}

	// Integrations: drawn for every row, kept where the file carries them.
	var all, conv segment.Bool
	switch x := rng.IntN(10000); {
	case x < 100:
		conv = segment.False
		if x < 30 {
			all = segment.True
		}
	case x < 150:
		all, conv = segment.False, segment.True
	case x < 200:
		all = segment.False
	case x < 700:
		all = segment.True
	}
	if carriesIntegrations(t, g.p.day, g.p.hour) {
		e.IntegrationsAll, e.IntegrationsConvertro = all, conv
	}

	switch t.name {
	case "identifies":
		b := append(g.buf[:0], u.first...)
		b = append(b, '.')
		b = append(b, u.last...)
		b = strconv.AppendInt(b, int64(rng.IntN(100)), 10)
		b = append(b, "@example.com"...)
		e.Email = g.str.str(toLower(b))
		b = append(b[:0], u.first...)
		b = append(b, ' ')
		b = append(b, u.last...)
		e.TraitName = g.str.str(b)
		e.Plan = u.plan
		g.buf = b
	case "tracks":
		x := rng.IntN(100)
		for _, te := range trackEvents {
			if x < te.weight {
				e.Event, e.EventText = te.slug, te.text
				break
			}
			x -= te.weight
		}
	case "application_installed":
		e.Event, e.EventText = t.event, t.eventTxt
		e.Version, e.Build = u.appVersion, u.build
	case "pages":
		pg := pageNames[rng.IntN(len(pageNames))]
		sku := 1000 + rng.IntN(9000)
		b := append(g.buf[:0], pg.path...)
		if pg.name == "Product" {
			b = append(b, "sku-"...)
			b = strconv.AppendInt(b, int64(sku), 10)
		}
		e.Name, e.Path, e.Title = pg.name, g.str.str(b), pg.title
		b = append(append(b[:0], "https://shop.example.com"...), e.Path...)
		e.URL = g.str.str(b)
		c.PagePath, c.PageURL = e.Path, e.URL
		c.PageReferrer = referrers[rng.IntN(len(referrers))]
		g.buf = b
	case "order_completed":
		g.order(e)
	}
}

func toLower(b []byte) []byte {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return b
}

// order fills the order_completed properties.
func (g *generator) order(e *Event) {
	rng := g.rng
	e.Event, e.EventText = "order_completed", "Order Completed"
	id := rng.Uint64()
	if !g.chance(100) {
		b := append(g.buf[:0], "ORD-"...)
		b = strconv.AppendUint(b, id>>14, 36)
		e.OrderID = g.str.str(toUpper(b))
		g.buf = b
	}
	total, revenue := g.cents(), g.cents()
	var hasTotal, hasRevenue bool
	switch x := rng.IntN(100); {
	case x < 60:
		hasTotal, hasRevenue = true, rng.IntN(10) < 7
		if revenue > total {
			revenue = total * 9 / 10
		}
	case x < 85:
		hasRevenue = true
	}
	textStyle, naStyle := rng.IntN(100), rng.IntN(2)
	if hasTotal {
		e.Total = centsNumber(total)
		e.TotalText = g.money(total, textStyle)
	} else if naStyle == 0 {
		e.TotalText = "NA"
	}
	if hasRevenue {
		e.Revenue = centsNumber(revenue)
		e.RevenueText = g.money(revenue, textStyle)
	} else if naStyle == 0 {
		e.RevenueText = "NA"
	}
	e.Currency = currencies[rng.IntN(len(currencies))]
	if g.chance(500) {
		e.Currency = ""
	}
	switch x := rng.IntN(100); {
	case x < 40:
	case x < 61:
		e.Repeat = segment.True
	default:
		e.Repeat = segment.False
	}
	amount := total
	if !hasTotal {
		amount = revenue
	}
	if rng.IntN(100) < 15 {
		e.Coupon = coupons[rng.IntN(len(coupons))]
		e.Discount = centsNumber(max(amount, 0) / 10)
	}
	e.Shipping = centsNumber([]int64{0, 499, 999}[rng.IntN(3)])
	e.Tax = centsNumber(max(amount, 0) * 8 / 100)
	n := 1 + rng.IntN(4)
	b := append(g.buf[:0], '[')
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"product_id":"sku-`...)
		b = strconv.AppendInt(b, int64(1000+rng.IntN(9000)), 10)
		b = append(b, `","name":"`...)
		b = append(b, productNames[rng.IntN(len(productNames))]...)
		b = append(b, `","price":`...)
		b = strconv.AppendFloat(b, float64(199+rng.IntN(20000))/100, 'f', -1, 64)
		b = append(b, `,"quantity":`...)
		b = strconv.AppendInt(b, int64(1+rng.IntN(3)), 10)
		b = append(b, '}')
	}
	b = append(b, ']')
	if len(b) > 160 { // warehouses cut long JSON text
		b = b[:160]
	}
	e.Products = g.str.str(b)
	g.buf = b
}

func toUpper(b []byte) []byte {
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
	return b
}

// money writes an amount as a warehouse text column might hold it.
func (g *generator) money(cents int64, style int) string {
	b := g.buf[:0]
	if style >= 90 {
		b = append(b, ' ') // stray space around the number
	}
	neg := cents < 0
	if neg {
		cents = -cents
		b = append(b, '-')
	}
	whole, frac := cents/100, cents%100
	switch {
	case style < 55: // "49.99"
		b = strconv.AppendInt(b, whole, 10)
		b = append(b, '.', byte('0'+frac/10), byte('0'+frac%10))
	case style < 90 && !neg: // "$1,299.50"; refunds stay plain, as "-$5" is read differently by different tools
		b = append(b, '$')
		b = appendThousands(b, whole)
		b = append(b, '.', byte('0'+frac/10), byte('0'+frac%10))
	default: // " 1299.5 ": shortest form
		b = strconv.AppendFloat(b, float64(cents)/100, 'f', -1, 64)
		b = append(b, ' ')
	}
	s := g.str.str(b)
	g.buf = b
	return s
}

func appendThousands(b []byte, v int64) []byte {
	s := strconv.FormatInt(v, 10)
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			b = append(b, ',')
		}
		b = append(b, s[i])
	}
	return b
}
