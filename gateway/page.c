/*
 * page.c: the fan's offer page, GET /o/TOKEN.
 *
 * One small HTML document with its style and script inline (no framework,
 * nothing fetched from elsewhere; the Content-Security-Policy allows only
 * this response's nonce and calls to this origin).  It shows the event, the
 * deadline with a live countdown, and Accept / Decline buttons that POST to
 * /v1/offers/TOKEN:accept (or :decline) with an Idempotency-Key made here,
 * once per page load: a double tap, or a retry after a lost answer, books
 * once.  The countdown runs on the server's clock (the page carries the
 * server's now), so a fan's wrong clock does not move the deadline.  After
 * the deadline, after an answer, or for a link that does not verify, the
 * page says so.
 */
#define _GNU_SOURCE

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

/* A growing string. */
typedef struct Html
{
	char	   *data;
	size_t		len;
	size_t		cap;
} Html;

static void
put(Html *h, const char *s, size_t n)
{
	if (h->len + n + 1 > h->cap)
	{
		size_t		cap = h->cap ? h->cap : 8192;
		char	   *grown;

		while (h->len + n + 1 > cap)
			cap *= 2;
		grown = gateway_malloc(cap);
		if (h->data)
			memcpy(grown, h->data, h->len);
		free(h->data);
		h->data = grown;
		h->cap = cap;
	}
	memcpy(h->data + h->len, s, n);
	h->len += n;
	h->data[h->len] = '\0';
}

static void
puts_raw(Html *h, const char *s)
{
	put(h, s, strlen(s));
}

/* text for an element or a quoted attribute */
static void
puts_escaped(Html *h, const char *s)
{
	for (; *s; s++)
	{
		switch (*s)
		{
			case '&':
				puts_raw(h, "&amp;");
				break;
			case '<':
				puts_raw(h, "&lt;");
				break;
			case '>':
				puts_raw(h, "&gt;");
				break;
			case '"':
				puts_raw(h, "&quot;");
				break;
			case '\'':
				puts_raw(h, "&#39;");
				break;
			default:
				put(h, s, 1);
		}
	}
}

static const char page_style[] =
	":root{color-scheme:light dark;--fg:#1a1a1a;--bg:#fafafa;--card:#fff;--muted:#555;"
	"--ok:#0a6b2f;--on-ok:#fff;--warn:#8a1c1c;--line:#ccc}"
	"@media (prefers-color-scheme:dark){:root{--fg:#eee;--bg:#121212;--card:#1e1e1e;"
	"--muted:#bbb;--ok:#52c27a;--on-ok:#121212;--warn:#ff8a80;--line:#444}}"
	"*{box-sizing:border-box}"
	/* .actions is display:flex: hidden must still hide it */
	"[hidden]{display:none!important}"
	"body{margin:0;font:1.125rem/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;"
	"color:var(--fg);background:var(--bg)}"
	"main{max-width:28rem;margin:0 auto;padding:1.5rem 1rem}"
	".card{background:var(--card);border:1px solid var(--line);border-radius:.75rem;padding:1.25rem}"
	"h1{font-size:1.5rem;margin:0 0 .5rem}"
	/* the heading takes the focus from a button gone; it is no control */
	"h1:focus{outline:none}"
	".event{font-size:1.25rem;font-weight:600;margin:0 0 1rem;overflow-wrap:anywhere}"
	".countdown{font-size:2.5rem;font-weight:700;font-variant-numeric:tabular-nums;margin:.25rem 0}"
	".muted{color:var(--muted)}"
	".actions{display:flex;flex-direction:column;gap:.75rem;margin-top:1.25rem}"
	"button{font:inherit;font-weight:600;min-height:3rem;border-radius:.5rem;border:2px solid var(--ok);"
	"padding:.5rem 1rem;cursor:pointer}"
	"#accept{background:var(--ok);color:var(--on-ok)}"
	"#decline{background:transparent;color:var(--fg);border-color:var(--line)}"
	"button:focus-visible{outline:3px solid var(--fg);outline-offset:2px}"
	"button:disabled{opacity:.6;cursor:wait}"
	".ref{font-family:ui-monospace,monospace;font-size:1.25rem;overflow-wrap:anywhere}"
	".state-accepted h1{color:var(--ok)}.state-expired h1,.state-invalid h1,.state-failed h1{color:var(--warn)}";

static const char page_script[] =
	"(function(){'use strict';"
	"var main=document.getElementById('offer');"
	"var state=main.getAttribute('data-state');"
	"if(state==='accepting'){setTimeout(function(){location.reload();},3000);return;}"
	"if(state!=='open')return;"
	"var token=main.getAttribute('data-token'),key=main.getAttribute('data-key');"
	"var deadline=Number(main.getAttribute('data-deadline'));"
	"var skew=Number(main.getAttribute('data-now'))-Date.now();"
	"var title=document.getElementById('title'),countdown=document.getElementById('countdown');"
	"var when=document.getElementById('when'),status=document.getElementById('status');"
	"var actions=document.getElementById('actions'),accept=document.getElementById('accept');"
	"var decline=document.getElementById('decline');"
	"var busy=false,done=false,confirmDecline=false,timer;"
	"function pad(n){return(n<10?'0':'')+n;}"
	"function left(){return Math.max(0,Math.ceil((deadline-(Date.now()+skew))/1000));}"
	"function fmt(s){var h=Math.floor(s/3600),m=Math.floor(s/60)%60,r=s%60;"
	"return(h>0?h+':'+pad(m):m)+':'+pad(r);}"
	"function finish(cls,heading,text){done=true;clearInterval(timer);"
	"main.setAttribute('data-state',cls);main.className='state-'+cls;"
	"title.textContent=heading;actions.hidden=true;countdown.hidden=true;when.hidden=true;"
	"status.textContent=text;document.title=heading;"
	/* the focused button is gone: focus the answer, not the top of the page */
	"title.tabIndex=-1;title.focus();}"
	"function tick(){var s=left();countdown.textContent=fmt(s);"
	"if(s===0&&!busy&&!done)finish('expired','This offer has expired',"
	"'The time to answer ran out, and the seat has gone to the next person in line.');}"
	"function enable(on){accept.disabled=!on;decline.disabled=!on;}"
	"function show(code,b,action){"
	"if(action==='accept'&&code===200&&b.state==='ACCEPTED'){"
	"finish('accepted','You\\u2019re in!','Your reservation: '+(b.reservation_ref||'confirmed')+'.');return;}"
	"if(action==='accept'&&code===202){busy=true;status.textContent='Booking your seat\\u2026';"
	"setTimeout(function(){busy=false;send('accept');},2000);return;}"
	"if(action==='decline'&&code===200){finish('declined','Offer declined',"
	"'Thanks for letting us know; the seat goes to the next person in line.');return;}"
	"if(code===409&&b&&b.state==='FAILED'){finish('failed','The seat could not be booked',"
	"'You are back in line at your place.');return;}"
	"if(code===409||code===410){finish('expired','This offer has expired',"
	"'The time to answer ran out, or the offer was settled already.');return;}"
	"if(code===403||code===404){finish('invalid','This link is not valid',"
	"'Use the latest link you were sent.');return;}"
	"enable(true);status.textContent=(code>=500?'We could not save your answer just now. '"
	":b&&b.title?b.title+'. ':'')+'Please try again.';}"
	"function send(action){if(busy||done)return;busy=true;enable(false);"
	"status.textContent=action==='accept'?'Booking your seat\\u2026':'Declining\\u2026';"
	"fetch('/v1/offers/'+encodeURIComponent(token)+':'+action,{method:'POST',"
	"headers:{'Idempotency-Key':key},credentials:'omit',cache:'no-store'})"
	".then(function(r){return r.json().then(function(b){return{code:r.status,body:b};},"
	"function(){return{code:r.status,body:null};});})"
	".then(function(r){busy=false;show(r.code,r.body,action);},"
	"function(){busy=false;enable(true);status.textContent='No connection. Please try again.';});}"
	"accept.addEventListener('click',function(){send('accept');});"
	"decline.addEventListener('click',function(){"
	"if(!confirmDecline){confirmDecline=true;decline.textContent='Tap again to decline';"
	"status.textContent='Declining gives the seat to the next person in line.';return;}"
	"send('decline');});"
	"tick();timer=setInterval(tick,250);"
	"})();";

/* The page up to <main>'s open tag, unclosed; makes the response's nonce. */
static void
page_start(Html *h, Reply *reply, const char *state, const char *heading)
{
	const char *nonce = reply->nonce;

	gateway_random_hex(reply->nonce, 16);
	puts_raw(h, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
			 "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
			 "<meta name=\"robots\" content=\"noindex\"><title>");
	puts_escaped(h, heading);
	puts_raw(h, "</title><style nonce=\"");
	puts_raw(h, nonce);
	puts_raw(h, "\">");
	puts_raw(h, page_style);
	puts_raw(h, "</style></head><body><main id=\"offer\" class=\"state-");
	puts_raw(h, state);
	puts_raw(h, "\" data-state=\"");
	puts_raw(h, state);
	puts_raw(h, "\"");
}

static void
page_end(Html *h, bool script, Reply *reply)
{
	if (script)
	{
		puts_raw(h, "<script nonce=\"");
		puts_raw(h, reply->nonce);
		puts_raw(h, "\">");
		puts_raw(h, page_script);
		puts_raw(h, "</script>");
	}
	puts_raw(h, "</body></html>\n");
	free(reply->body);
	reply->body = h->data;
	reply->content_type = "text/html; charset=utf-8";
	reply->html = true;
	reply->location[0] = '\0';
}

/*
 * A page with a heading and a sentence: an offer answered or settled, or a
 * link that does not lead to one.  event (the resource) and ref (the
 * reservation, after the sentence) may be NULL; script: the accepting page
 * reloads itself.
 */
static void
card_page(Reply *reply, int status, const char *state, const char *heading,
		  const char *event, const char *text, const char *ref, bool script)
{
	Html		h = {0};

	page_start(&h, reply, state, heading);
	puts_raw(&h, "><div class=\"card\"><h1 id=\"title\">");
	puts_escaped(&h, heading);
	puts_raw(&h, "</h1>");
	if (event != NULL)
	{
		puts_raw(&h, "<p class=\"event\">");
		puts_escaped(&h, event);
		puts_raw(&h, "</p>");
	}
	puts_raw(&h, "<p id=\"status\" role=\"status\">");
	puts_escaped(&h, text);
	if (ref != NULL)
	{
		puts_raw(&h, "<span class=\"ref\">");
		puts_escaped(&h, ref);
		puts_raw(&h, "</span>");
	}
	puts_raw(&h, "</p></div></main>");
	reply->status = status;
	page_end(&h, script, reply);
}

static void
message_page(Reply *reply, int status, const char *state, const char *heading,
			 const char *text)
{
	card_page(reply, status, state, heading, NULL, text, NULL, false);
}

void
gateway_offer_page(const char *token, Reply *reply)
{
	Caller		as_token;
	DbCall		call = {0};
	const char *resource_id,
			   *state,
			   *reservation;
	bool		past;
	Html		h = {0};

	call.sql = "SELECT t.resource_id, t.state,"
		" t.expires_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp(),"
		" pg_catalog.floor(pg_catalog.date_part('epoch', t.expires_at)"
		"   OPERATOR(pg_catalog.*) 1000)::bigint,"
		" pg_catalog.floor(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp())"
		"   OPERATOR(pg_catalog.*) 1000)::bigint,"
		" t.reservation_ref,"
		" pg_catalog.to_char(t.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
		" pg_catalog.to_char(t.expires_at AT TIME ZONE 'UTC', 'HH24:MI \"UTC\"')"
		" FROM waitlist_token_offer($1::pg_catalog.text) t";
	call.nparams = 1;
	call.params[0] = token;
	gateway_link_caller(&as_token);
	if (!gateway_db_call(&as_token, &call, reply))
	{
		if (strcmp(call.sqlstate, "WL013") == 0)
			message_page(reply, 410, "expired", "This offer has expired",
						 "The time to answer ran out, and the seat has gone to the next person in line.");
		else if (strcmp(call.sqlstate, "WL011") == 0 || strcmp(call.sqlstate, "WL012") == 0 ||
				 strcmp(call.sqlstate, "WL014") == 0 || strcmp(call.sqlstate, "22004") == 0)
			message_page(reply, reply->status, "invalid", "This link is not valid",
						 "Check that you opened the whole link, or use the latest one you were sent.");
		else
			message_page(reply, reply->status, "error", "Something went wrong",
						 "We could not load your offer just now. Please reload the page in a moment.");
		gateway_db_call_free(&call);
		return;
	}
	resource_id = call.values[0];
	state = call.values[1];
	past = call.values[2] && strcmp(call.values[2], "t") == 0;
	reservation = call.values[5];

	if (strcmp(state, "ACCEPTED") == 0)
		card_page(reply, 200, "accepted", "You\xe2\x80\x99re in!", resource_id,
				  "Your reservation: ", reservation ? reservation : "confirmed", false);
	else if (strcmp(state, "ACCEPTING") == 0)
		card_page(reply, 200, "accepting", "Booking your seat\xe2\x80\xa6", resource_id,
				  "You accepted; the booking is being made. This page updates by itself.",
				  NULL, true);
	else if (strcmp(state, "DECLINED") == 0)
		message_page(reply, 200, "declined", "Offer declined",
					 "You declined this offer; the seat went to the next person in line.");
	else if (strcmp(state, "FAILED") == 0)
		message_page(reply, 200, "failed", "The seat could not be booked",
					 "You are back in line at your place; we will send a new offer when a seat is free.");
	else if (strcmp(state, "REVOKED") == 0)
		message_page(reply, 200, "revoked", "Offer withdrawn",
					 "This offer was withdrawn because you left the waitlist.");
	else if (strcmp(state, "OPEN") != 0 || past)
		message_page(reply, 200, "expired", "This offer has expired",
					 "The time to answer ran out, and the seat has gone to the next person in line.");
	else
	{
		char		key[33];

		/* once per page load: the same key for every tap and retry from here */
		gateway_random_hex(key, 16);
		page_start(&h, reply, "open", "Your offer");
		puts_raw(&h, " data-token=\"");
		puts_escaped(&h, token);
		puts_raw(&h, "\" data-key=\"");
		puts_raw(&h, key);
		puts_raw(&h, "\" data-deadline=\"");
		puts_raw(&h, call.values[3]);
		puts_raw(&h, "\" data-now=\"");
		puts_raw(&h, call.values[4]);
		puts_raw(&h, "\"><div class=\"card\"><h1 id=\"title\">A seat is yours to take</h1>"
				 "<p class=\"event\">");
		puts_escaped(&h, resource_id);
		puts_raw(&h, "</p><p class=\"muted\" id=\"when\">Answer by <time datetime=\"");
		puts_raw(&h, call.values[6]);
		puts_raw(&h, "\">");
		puts_escaped(&h, call.values[7]);
		puts_raw(&h, "</time>. Time left:</p>"
				 "<p class=\"countdown\" id=\"countdown\" role=\"timer\" aria-live=\"off\">&nbsp;</p>"
				 "<div class=\"actions\" id=\"actions\">"
				 "<button type=\"button\" id=\"accept\">Accept</button>"
				 "<button type=\"button\" id=\"decline\">Decline</button></div>"
				 "<p id=\"status\" role=\"status\" aria-live=\"polite\"></p>"
				 "<noscript><p>Answering needs JavaScript; turn it on and reload this page.</p></noscript>"
				 "</div></main>");
		reply->status = 200;
		page_end(&h, true, reply);
	}
	gateway_db_call_free(&call);
}
