"""A Stripe-compatible fake API server, for the tests and the benchmark.

It speaks real HTTP on 127.0.0.1 so the real ``stripe`` SDK (and a real browser, for the
hosted-page stand-in) can talk to it:

    with FakeStripe() as fake:
        client = stripe.StripeClient(fake.api_key, base_addresses={"api": fake.url})

Objects it returns start from the shapes in ``stripe_objects.json`` beside this file.

The modules, one job each: ``api`` (FakeStripe: the sessions, their changes, the endpoints,
the hosted page's requests), ``server`` (HTTP serving, authentication, routing, idempotency
keys), ``forms`` (Stripe's form encoding), ``params`` (Checkout Session parameter checks),
``objects`` (Stripe objects from their example shapes), ``events`` (event envelopes, signing,
webhook delivery), ``faults`` (injected failures, hangs and dropped connections), ``page`` (the
hosted page's HTML), ``responses`` and ``errors`` (what the fake answers with).
"""

from devtools.fakestripe.api import FakeStripe
from devtools.fakestripe.forms import decode_form
from devtools.fakestripe.objects import load_fixtures
from devtools.fakestripe.server import RecordedRequest

__all__ = ["FakeStripe", "RecordedRequest", "decode_form", "load_fixtures"]
