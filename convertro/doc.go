// Package convertro owns everything about talking to Convertro: the
// destination settings, the rules that turn a decoded Segment message into
// Convertro requests, the wire format of those requests, and the HTTP client
// that delivers them. A simulator of Convertro's API, for tests and demos,
// lives in the simulator subpackage.
//
// The specification is Segment's Convertro destination document (the seed);
// the design page "Convertro: what we send, and why" numbers its rules 1-19
// and settles what the seed leaves open. This package follows both, and where
// they differ the seed wins.
//
// # Settings
//
// [Settings] holds the seed's settings under Segment's catalog keys (account,
// clientName, siteId, domain, events, hybridAttributionModel) plus the
// --endpoint override and one choice of this package's own,
// AnonymousIDAsDeviceID (--anonymous-id-as-device-id, off by default): web
// (analytics.js) rows carry no context.device.id, and rule 3 skips them, as
// [SkipMissingDeviceIDHasAnonymousID] when they have an anonymousId; with
// the choice on, the anonymousId is their sid. It is off because the
// anonymousId is not the visitor id Convertro's own browser tag sets. [Settings.Validate] names every missing or malformed
// setting; clientName and siteId are needed to deliver, not for a dry run.
//
// # Rules
//
// [NewMapper] compiles the settings once; [Mapper.Map] applies the rules to
// one message, appending zero, one or two (or, for an event mapped to several
// names, more) [Delivery] values, or saying why it sent nothing
// ([SkipReason]). It is pure and allocates nothing in the steady state, since
// it runs once per row of a backfill. Engage audience syncs (rule 18) go
// through [Mapper.MapAudience] or [AudienceDelivery], computed traits (rule
// 20: {trait}={value}, the value in the form the sync gives it, empty for a
// removed trait) through [Mapper.MapTrait], with the key from [SnakeCase],
// checked once by [ValidateAudience]. Where each rule comes from:
//
//   - seed: 1 identify ties device id to userId, no traits; 2 no userId, no
//     request; 3 device id required for every call; 4-8 sale, sale.new,
//     sale.repeat and the hybrid model, for "Order Completed" and (the name
//     in the seed's settings table) "Completed Order"; 9 value = total, else
//     revenue, else 1; 10 no orderId, no sale; 12 other tracks under their
//     own name, value = revenue, else 1; 13 mapped events; 15 Application
//     Installed to the installs endpoint; 16 identify and track only; 18
//     audience traits, snake_cased; 19 the Integrations object; 20 computed
//     traits sent "as a user property" like audiences.
//   - browser code (Segment's analytics.js integration): the order of the
//     two hybrid hits (sale.new or sale.repeat first, then sale); 11 an
//     events entry for Order Completed is ignored; 14 an unmapped event is
//     not sent when the events map is not empty; repeat counts only as a
//     real boolean.
//   - convertro code (Convertro's live.js and a tag-manager plugin): paths
//     /api/user/ and /api/hit/, parameter names sid, id, typ, val, eid, ts,
//     cua, cip.
//   - inferred: 17 a message without any timestamp is skipped; the
//     /api/install/ path; the name normalisation of event names and the
//     snake casing of audience names beyond the design page's examples; a
//     track with no event name at all is skipped as unmapped_event (Convertro
//     refuses an empty typ); NaN and infinite values count as absent (so
//     val=1); a hit or install whose messageId is NULL gets an eid derived
//     from the row's values (eventid.go: row- and 32 hex digits of a
//     SHA-256), the same on every run of the row, since Convertro
//     de-duplicates on eid and refuses a hit without one; an empty eid of a
//     hand-made Delivery is left out of the URL; a computed trait's value
//     as text (times as Unix seconds, like ts) and a removed trait as an
//     empty value, since a query string has no null.
//
// Where the seed and the design page differ, the seed wins. No outright
// contradiction was found; these are the places where they can be read to
// differ, and what this package does:
//
//   - Web in cloud mode: the seed lists cloud mode for web, and also says
//     Convertro "requires your Device ID for all API calls", which web rows
//     lack; the design page's rule 3 skips every message without a device
//     id. By default this package does what both say (no device id, no
//     request), under a reason of its own for rows with an anonymousId, so
//     that the run says why and what would send them; sending them under
//     their anonymousId is the operator's choice, never the default.
//   - eid: the design page sends the messageId as the event id of hits and
//     installs, and says nothing of a NULL one; the seed does not name eid.
//     A row without messageId gets an id derived from its values (inferred,
//     above), rather than a request Convertro's de-duplication cannot key.
//   - Rule 10: the browser code sends an Order Completed without orderId;
//     the seed says ecommerce events are sent "as long as they include an
//     orderId". The design page already follows the seed: skipped as
//     missing_order_id. The seed's sentence says "Ecommerce events", which
//     could be read as every ecommerce event; this package, like the design
//     page, applies it to the sale events, which are the only ecommerce
//     events the destination treats specially. A mapped ecommerce event (say
//     "Order Refunded") without orderId is sent with eid = messageId.
//   - Rule 18: the seed's example key order_completed_last_30days does not
//     show the audience's name; the design page's examples
//     ("Order Completed Last 30 Days" → order_completed_last_30_days) are
//     consistent with it, since an audience named "Order Completed Last
//     30days" gives exactly the seed's key. No conflict; both are tested.
//   - Domain: the seed's mobile section says to enter Client Name, Site ID
//     and Domain, while its settings table marks all three optional. Client
//     Name and Site ID are path segments, so delivery requires them (design
//     page); Domain stays optional and defaults to sp1.convertro.com, the
//     host Convertro's own code uses.
//   - Rule 12 and the seed's Events setting ("Convertro only wants to receive
//     specific events"): the design page sends every track under its own
//     name when the map is empty, from the seed's Track section; an operator
//     who wants only some events sets the map.
//
// # Wire format
//
// [Wire] holds, in one file (wire.go), every path, parameter name, parameter
// order and encoding rule, so that one line changes when Convertro's private
// documentation says otherwise. [Wire.AppendURL] writes a [Delivery] as a
// full GET URL into a caller's buffer without allocating; every value is
// query-escaped; val is the number's own shortest decimal, never an
// exponent ([AppendNumber]: a FLOAT as the 32-bit value it holds, a DECIMAL,
// a long INT64 or text from its own digits, never through a float64); ts is
// whole Unix seconds.
//
// # Client and simulator
//
// [Client] sends the request URLs over a keep-alive connection pool sized
// for the senders, under one rate limit shared by the whole process. It
// retries transient failures (408, 429, 5xx, timeouts, connection errors)
// with exponential backoff and full jitter (at most MaxBackoff, 30 s, per
// wait), honouring Retry-After, with no count of attempts unless
// ClientOptions.MaxAttempts sets one: an outage costs about its length, and
// only DownAfter ends the retries. 401 and 403 are [ErrUnauthorized]: the
// credentials, not the row, so not retried and not a refusal of the row.
// Any other 4xx is permanent and is not retried. Redirects are never
// followed: a 3xx is permanent, and its error says where it pointed.
// Errors name the request without its query string, which holds a person's
// device id, user id, user agent and IP.
//
// With ClientOptions.Adaptive (off in the zero value, for callers that want
// exactly the rate they set) the limit also follows Convertro's 429s: an
// AIMD controller counts the answers of half-second windows, cuts the limit
// by 30% when more than 5% of a window's answers are 429s (starting, when
// unlimited, from the rate Convertro accepted), and after each window
// without a 429 raises it by 5% (1% past the rate at which Convertro last
// pushed back; at least 1 request/s), up to ClientOptions.Rate.
// [Client.Rate] and [Client.RateHistory] report it.
//
// A Client stops when Convertro has failed every request (5xx, 408, 429,
// timeouts, connection errors; any 2xx or other 4xx shows it up) for
// ClientOptions.DownAfter, five minutes by default: every Get, including
// those waiting to retry, then returns [ErrDown] at once, saying since when
// Convertro has been down, so that the run stops and can be resumed later.
// One request that fails for DownAfter while others go through returns
// [ErrGaveUp] instead of being retried for ever; it gives up alone only if
// an answer came since its previous failure, so that a request whose failures
// began a moment before an outage's streak stops with the others on
// [ErrDown].
//
// The simulator subpackage serves the API the design page describes and can
// be told to misbehave, so that retries, throttling and crash recovery are
// tested over real HTTP.
//
// # Errors
//
//   - [ErrInvalidSettings]: from [Settings.Validate], [NewMapper] and
//     [ValidateAudience]; the concrete error is a
//     *[SettingError] naming the setting (several are joined with
//     errors.Join).
//   - [Mapper.Map] returns no error: a message that yields no request gets a
//     [SkipReason], which the run counts by its String.
//   - [ErrNotRequestURL]: from [Wire.Retarget], for a URL that is not a
//     Convertro request URL.
//   - The client's errors ([ErrPermanent], [ErrUnauthorized], [ErrGaveUp], [ErrDown],
//     *[StatusError], or the context's error) are described on [Client.Get].
//
// # Concurrency
//
// [Mapper] and [Wire] are immutable after construction and safe for
// concurrent use by any number of goroutines; each caller brings its own
// dst buffers. A [Delivery] points into the message's decoder buffers and is
// valid only as long as they are. [Client] is safe for concurrent use; its
// rate limiter, throttle and down clock are shared by every caller, and the
// throttle's bookkeeping per attempt is a few counter updates under a mutex
// never held across I/O.
package convertro
