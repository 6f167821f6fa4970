-- demo/gateway.sql: what waitlist-gateway needs, for demo/run's curl
-- session: a login role that is a member of one role per duty, and a
-- resource of its own.
CREATE ROLE demo_gateway LOGIN;
CREATE ROLE demo_fans;
CREATE ROLE demo_links;
CREATE ROLE demo_box_office;
GRANT demo_fans, demo_links, demo_box_office TO demo_gateway;
SELECT waitlist_grant('demo_fans', 'app'),
       waitlist_grant('demo_links', 'token'),
       waitlist_grant('demo_box_office', 'booking');
-- booked by demo/concert.sql's booking function, as the concert is; it runs
-- as the role that accepts
SELECT waitlist_create_resource('encore-2026', offer_ttl => '10 minutes',
                                booking_function => 'book_seat(text, text, bigint, text)');
GRANT EXECUTE ON FUNCTION book_seat(text, text, bigint, text) TO demo_fans, demo_links;
