"""Regenerate examples/directory.json: a small, realistic sample directory for the demo."""

import json
import unicodedata
import uuid
from pathlib import Path

FIRST = ["Ada", "Grace", "Alan", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances",
         "Edsger", "Radia", "Tim", "Anita", "Vint", "Hedy", "John", "Sophie", "Jean", "Katherine",
         "Donald", "Shafi", "Leslie", "Niklaus", "Élodie", "Søren", "Zoë", "Jürgen", "Małgorzata",
         "Ngozi", "Hiroshi", "Priya", "Mateo", "Aisha", "Chen", "Olga", "Yusuf"]
LAST = ["Lovelace", "Hopper", "Turing", "Torvalds", "Hamilton", "Thompson", "Liskov", "Ritchie",
        "Allen", "Dijkstra", "Perlman", "Berners-Lee", "Borg", "Cerf", "Lamarr", "McCarthy",
        "Wilson", "Sammet", "Johnson", "Knuth", "Goldwasser", "Lamport", "Wirth", "Durand",
        "Kierkegaard", "Müller", "Schmidhuber", "Kowalska", "Okafor", "Tanaka", "Sharma", "García",
        "Bello", "Wei", "Petrova", "Demir"]


def main() -> None:
    ns = uuid.UUID("6f1c1f1e-5b3a-4f7e-9c61-3c2d8a9e0d11")
    users = []
    for i, (first, last) in enumerate(zip(FIRST, LAST, strict=True)):
        plain = unicodedata.normalize("NFKD", f"{first[0]}{last}".replace("ł", "l").replace(
            "ø", "o"))
        login = "".join(c for c in plain if c.isascii() and c.isalnum()).lower()
        users.append({
            "id": str(uuid.uuid5(ns, login)), "user_name": login,
            "email": f"{login}@example.com" if i != 7 else "",
            "given_name": first, "family_name": last, "display_name": f"{first} {last}",
            "active": i not in (5, 11),
        })
    ids = [u["id"] for u in users]
    gid = {n: str(uuid.uuid5(ns, "group:" + n)) for n in
           ["Everyone", "Engineering", "Platform", "SRE", "Sales", "Support", "Leadership"]}
    groups = [
        {"id": gid["Everyone"], "name": "Everyone", "members": [],
         "groups": [gid["Engineering"], gid["Sales"], gid["Support"], gid["Leadership"]]},
        {"id": gid["Engineering"], "name": "Engineering", "members": ids[0:6],
         "groups": [gid["Platform"]]},
        {"id": gid["Platform"], "name": "Platform", "members": ids[6:10], "groups": [gid["SRE"]]},
        {"id": gid["SRE"], "name": "SRE", "members": ids[10:13], "groups": [gid["Engineering"]]},
        {"id": gid["Sales"], "name": "Sales", "members": ids[13:22], "groups": []},
        {"id": gid["Support"], "name": "Support", "members": ids[22:30], "groups": []},
        {"id": gid["Leadership"], "name": "Leadership", "members": [ids[0], ids[13], ids[30]],
         "groups": []},
    ]
    out = Path(__file__).with_name("directory.json")
    out.write_text(json.dumps({"users": users, "groups": groups}, indent=2, ensure_ascii=False)
                   + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
