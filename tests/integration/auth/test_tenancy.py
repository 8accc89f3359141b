"""No principal of one tenant can read another tenant's resources; agents see only their own."""

from __future__ import annotations

from tests.integration.auth.conftest import World

ROLES = ["agent", "supervisor", "admin"]


async def test_no_principal_reads_across_tenants(world: World) -> None:
    people: list[tuple[str, str, str, str]] = []  # tenant name, tenant id, username, user id
    for tenant_name in ("north", "south"):
        tenant_id = await world.tenant(tenant_name)
        for role in ROLES:
            username = f"{role}-{tenant_name}"
            people.append(
                (tenant_name, tenant_id, username, await world.user(tenant_id, username, role))
            )
    tokens = {p[2]: await world.bearer(p[0], p[2]) for p in people}
    roles = {p[2]: p[2].split("-")[0] for p in people}

    # Every (asker, target) pair: 36 of them, so exhaustive beats sampling here.
    for asker in people:
        for target in people:
            headers = tokens[asker[2]]
            one = await world.client.get(f"/api/v1/admin/users/{target[3]}", headers=headers)
            same_tenant = asker[1] == target[1]
            allowed = same_tenant and (roles[asker[2]] != "agent" or asker[3] == target[3])
            assert one.status_code == (200 if allowed else 404), (asker, target)
            if not allowed:
                assert target[2] not in one.text
        listing = await world.client.get("/api/v1/admin/users", headers=tokens[asker[2]])
        if roles[asker[2]] == "agent":
            assert listing.status_code == 403
        else:
            names = {u["username"] for u in listing.json()}
            assert names == {p[2] for p in people if p[1] == asker[1]}


async def test_an_admin_cannot_change_another_tenants_user(world: World) -> None:
    north = await world.tenant("north")
    south = await world.tenant("south")
    await world.user(north, "root", "admin")
    victim = await world.user(south, "victim")
    headers = await world.bearer("north", "root")
    response = await world.client.patch(
        f"/api/v1/admin/users/{victim}", json={"role": "admin"}, headers=headers
    )
    assert response.status_code == 404
    audit = (await world.client.get("/api/v1/audit", headers=headers)).json()
    assert all(victim not in str(record) for record in audit)


async def test_roles_gate_administration(world: World) -> None:
    tenant = await world.tenant("acme")
    await world.user(tenant, "agent1")
    await world.user(tenant, "boss", "supervisor")
    agent = await world.bearer("acme", "agent1")
    boss = await world.bearer("acme", "boss")
    new_user = {"username": "carol", "role": "agent"}
    assert (
        await world.client.post("/api/v1/admin/users", json=new_user, headers=agent)
    ).status_code == 403
    assert (
        await world.client.post("/api/v1/admin/users", json=new_user, headers=boss)
    ).status_code == 403
    assert (await world.client.get("/api/v1/audit", headers=boss)).status_code == 403
    assert (await world.client.get("/api/v1/admin/users", headers=boss)).status_code == 200


async def test_admin_creates_users_with_policy_checked(world: World) -> None:
    tenant = await world.tenant("acme")
    await world.user(tenant, "root", "admin")
    headers = await world.bearer("acme", "root")
    made = await world.client.post(
        "/api/v1/admin/users", json={"username": "carol", "role": "supervisor"}, headers=headers
    )
    assert made.status_code == 201
    assert len(made.json()["password"]) >= 12
    weak = await world.client.post(
        "/api/v1/admin/users", json={"username": "dave", "password": "short1"}, headers=headers
    )
    assert weak.status_code == 422
    assert weak.json()["error"]["code"] == "policy_violation"
    twice = await world.client.post(
        "/api/v1/admin/users", json={"username": "carol"}, headers=headers
    )
    assert twice.status_code == 409
    bad_role = await world.client.post(
        "/api/v1/admin/users", json={"username": "erin", "role": "god"}, headers=headers
    )
    assert bad_role.status_code == 422
