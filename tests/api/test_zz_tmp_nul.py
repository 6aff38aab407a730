from tests.api.test_challenges import Stack, challenge_body, next_midnight, stack  # noqa
def test_nul(stack):
    owner = stack.user()
    r = owner.post("/challenges", json=challenge_body(next_midnight(stack.now()), name="abcd"))
    print("create", r.status_code, r.text[:200])
    return_ = None
    if False:
        stack.services.projector.catch_up()
        print("catch_up ok")

    return_ = None
    r = owner.get("/challenges?scope=mine")
    print("list", r.status_code, r.text[:300])
    r = owner.get("/wallet/transactions?type=a%00b")
    print("tx", r.status_code, r.text[:300])
    r = owner.get("/simulated-stripe/checkout/a%00b")
    print("sim", r.status_code, r.text[:300])
    r = owner.get("/challenges?cursor=a%00b")
    print("cursor", r.status_code, r.text[:300])
    for path in ["/wallet?as_of=a%00", "/platform/revenue", "/audit/events", "/challenges/join"]:
        r = owner.get(path)
        print("x", path, r.status_code, r.text[:200])
    r = owner.post("/auth/refresh", json={"refresh_token": "a\u0000b"})
    print("refresh", r.status_code, r.text[:300])
    r = owner.post("/auth/logout", json={"refresh_token": "a\u0000b"})
    print("logout", r.status_code, r.text[:300])
    r = owner.post("/challenges/join", json={"invite_code": "a\u0000b", "timezone": "UTC"})
    print("join", r.status_code, r.text[:300])
    r = owner.post("/challenges/join", json={"invite_code": "ABCDEF", "timezone": "U\u0000TC"})
    print("join tz", r.status_code, r.text[:300])
