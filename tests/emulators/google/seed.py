"""A small, realistic account the integration tests start from."""

from __future__ import annotations

from dataclasses import dataclass, field

from .directory import Directory


@dataclass
class Org:
    """Ids of the seeded account, by short name."""

    users: dict[str, str] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)


def seed(d: Directory) -> Org:
    """admin, five staff (one suspended, one archived), nested groups, an outsider."""
    org = Org()
    org.users["admin"] = d.add_user("admin", "Ada", "Admin", admin=True, org_unit="/IT")
    org.users["alice"] = d.add_user("alice", "Alice", "Anders", org_unit="/Engineering")
    org.users["bob"] = d.add_user("bob", "Bob", "Brown", org_unit="/Engineering/Platform")
    org.users["carol"] = d.add_user("carol", "Carol", "Clark", org_unit="/Sales")
    org.users["dave"] = d.add_user("dave", "Dave", "Dunn", suspended=True, org_unit="/Sales")
    org.users["erin"] = d.add_user("erin", "Erin", "Eve", archived=True, org_unit="/Sales")
    g = org.groups
    g["eng"] = d.add_group("engineering", "Engineering")
    g["platform"] = d.add_group("platform", "Platform")
    g["sales"] = d.add_group("sales", "Sales")
    g["all"] = d.add_group("everyone", "Everyone")
    d.add_member(g["eng"], org.users["alice"], role="OWNER")
    d.add_member(g["eng"], g["platform"])
    d.add_member(g["platform"], org.users["bob"])
    d.add_member(g["sales"], org.users["carol"])
    d.add_member(g["sales"], org.users["dave"])
    d.add_member(g["sales"], org.users["erin"])
    d.add_external_member(g["sales"], "partner@other.example")
    d.add_customer_member(g["all"])
    return org
