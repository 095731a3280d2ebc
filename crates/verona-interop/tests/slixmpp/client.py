"""slixmpp (a Python XMPP library) as a user's client against a running Verona.

Run by tests/slixmpp.rs: python3 client.py PORT PASSWORD. Three accounts (juliet, romeo,
nurse, all with PASSWORD) on `localhost` at 127.0.0.1:PORT; TLS is verified against the CA
in SSL_CERT_FILE. Every client enables stream management (slixmpp's default) and acknowledges
what it gets. Prints one line per check, "ok NAME" or "FAIL NAME: DETAIL", and exits 1 if
any check failed or a step timed out.
"""

import asyncio
import os
import signal
import sys

import slixmpp

PORT = int(sys.argv[1])
PASSWORD = sys.argv[2]
STEP = 10  # seconds any one step may take
ROOM = "verona@chat.localhost"
failed = []


def check(name, passed, detail=""):
    print(("ok " if passed else "FAIL ") + name + ("" if passed else f": {detail}"), flush=True)
    if not passed:
        failed.append(name)


class User(slixmpp.ClientXMPP):
    def __init__(self, jid):
        super().__init__(jid, PASSWORD)
        self.ca_certs = os.environ["SSL_CERT_FILE"]
        for plugin in ["xep_0030", "xep_0045", "xep_0059", "xep_0060", "xep_0107", "xep_0115",
                       "xep_0163", "xep_0191", "xep_0198", "xep_0199", "xep_0203", "xep_0280",
                       "xep_0313", "xep_0359"]:
            self.register_plugin(plugin)
        self.chats = asyncio.Queue()
        self.room = asyncio.Queue()
        self.carbons = asyncio.Queue()
        self.moods = asyncio.Queue()
        self.add_event_handler(
            "message",
            lambda m: self.chats.put_nowait(m) if m["type"] in ("chat", "normal") and m["body"] else None)
        self.add_event_handler("groupchat_message", self.room.put_nowait)
        self.add_event_handler("carbon_received", lambda m: self.carbons.put_nowait(("received", m)))
        self.add_event_handler("carbon_sent", lambda m: self.carbons.put_nowait(("sent", m)))
        self.add_event_handler("user_mood_publish", self.moods.put_nowait)
        self.started = asyncio.Event()
        self.add_event_handler("session_start", self.start)

    async def start(self, _):
        await self.get_roster()
        self.send_presence()
        self.started.set()

    def drain(self, queue):
        while not queue.empty():
            queue.get_nowait()


async def online(jid):
    user = User(jid)
    user.connect(host="127.0.0.1", port=PORT)
    await asyncio.wait_for(user.started.wait(), STEP)
    return user


async def take(queue):
    return await asyncio.wait_for(queue.get(), STEP)


async def nothing(queue, within=1.0):
    try:
        return await asyncio.wait_for(queue.get(), within)
    except asyncio.TimeoutError:
        return None


async def archive(user, **query):
    found = []
    async for message in user.plugin["xep_0313"].iterate(total=50, **query):
        found.append(message["mam_result"]["forwarded"]["stanza"]["body"])
    return found


async def main():
    juliet = await online("juliet@localhost/balcony")
    romeo = await online("romeo@localhost/orchard")

    # RFC 6121 subscription both ways, approved by the client library.
    for user in (juliet, romeo):
        user.auto_authorize = True
        user.auto_subscribe = True
    juliet.send_presence(pto="romeo@localhost", ptype="subscribe")
    for _ in range(STEP * 10):
        if (juliet.client_roster["romeo@localhost"]["subscription"] == "both"
                and romeo.client_roster["juliet@localhost"]["subscription"] == "both"):
            break
        await asyncio.sleep(0.1)
    check("roster: subscribed both ways",
          juliet.client_roster["romeo@localhost"]["subscription"] == "both"
          and romeo.client_roster["juliet@localhost"]["subscription"] == "both",
          (juliet.client_roster["romeo@localhost"]["subscription"],
           romeo.client_roster["juliet@localhost"]["subscription"]))

    # One-to-one chat, with the archive's id (XEP-0359).
    juliet.send_message(mto="romeo@localhost", mbody="wherefore art thou?", mtype="chat")
    got = await take(romeo.chats)
    check("chat: delivered from the sender's full JID",
          (got["body"], str(got["from"])) == ("wherefore art thou?", "juliet@localhost/balcony"),
          (got["body"], str(got["from"])))
    check("chat: stanza-id by the account", got["stanza_id"]["by"] == "romeo@localhost"
          and len(got["stanza_id"]["id"]) > 0, str(got["stanza_id"]))

    # Carbons (XEP-0280) at a second resource.
    garden = await online("juliet@localhost/garden")
    await garden.plugin["xep_0280"].enable()
    romeo.send_message(mto="juliet@localhost/balcony", mbody="here", mtype="chat")
    kind, copy = await take(garden.carbons)
    check("carbons: a received copy", (kind, copy["carbon_received"]["body"]) == ("received", "here"),
          (kind, str(copy)))
    juliet.send_message(mto="romeo@localhost", mbody="again", mtype="chat")
    kind, copy = await take(garden.carbons)
    check("carbons: a sent copy", (kind, copy["carbon_sent"]["body"]) == ("sent", "again"),
          (kind, str(copy)))
    await take(romeo.chats)

    # The archive (XEP-0313), filtered by the other party.
    bodies = await archive(romeo, with_jid=slixmpp.JID("juliet@localhost"))
    check("mam: the conversation in order", bodies == ["wherefore art thou?", "here", "again"],
          bodies)

    # A new resource of Romeo's: its first presence brings each of Juliet's two resources'
    # presence, and then enough messages that the server asks it to acknowledge them all.
    tablet = await online("romeo@localhost/tablet")
    for n in range(10):
        juliet.send_message(mto="romeo@localhost/tablet", mbody=f"line {n}", mtype="chat")
    lines = [(await take(tablet.chats))["body"] for _ in range(10)]
    check("chat: ten lines to a new resource", lines == [f"line {n}" for n in range(10)], lines)

    # Offline storage (XEP-0160), in order, with delays.
    juliet.send_message(mto="nurse@localhost", mbody="offline 1", mtype="chat")
    juliet.send_message(mto="nurse@localhost", mbody="offline 2", mtype="chat")
    # Both are stored once Juliet's archive has them: only then does the Nurse log in.
    for _ in range(STEP * 10):
        if await archive(juliet, with_jid=slixmpp.JID("nurse@localhost")) == ["offline 1", "offline 2"]:
            break
        await asyncio.sleep(0.1)
    nurse = await online("nurse@localhost/chamber")
    first, second = await take(nurse.chats), await take(nurse.chats)
    check("offline: both, in order, delayed",
          [first["body"], second["body"]] == ["offline 1", "offline 2"]
          and first["delay"]["stamp"] is not None,
          [first["body"], second["body"], str(first["delay"])])

    # Group chat (XEP-0045): create, configure, join, talk, history, private messages.
    await juliet.plugin["xep_0045"].join_muc_wait(ROOM, "JC", maxstanzas=0, timeout=STEP)
    form = await juliet.plugin["xep_0045"].get_room_config(ROOM)
    await juliet.plugin["xep_0045"].set_room_config(ROOM, form)
    await romeo.plugin["xep_0045"].join_muc_wait(ROOM, "Romeo", maxstanzas=0, timeout=STEP)
    juliet.send_message(mto=ROOM, mbody="hi all", mtype="groupchat")
    heard = await take(romeo.room)
    check("muc: a message from the speaker's nick",
          (heard["body"], str(heard["from"])) == ("hi all", ROOM + "/JC"), str(heard))
    echo = await take(juliet.room)
    check("muc: reflected to the speaker", echo["body"] == "hi all", str(echo))
    await nurse.plugin["xep_0045"].join_muc_wait(ROOM, "Nurse", maxstanzas=5, timeout=STEP)
    old = await take(nurse.room)
    check("muc: history for a late joiner, delayed",
          old["body"] == "hi all" and old["delay"]["stamp"] is not None, str(old))
    occupants = sorted(juliet.plugin["xep_0045"].get_roster(ROOM))
    check("muc: the occupant list", occupants == ["JC", "Nurse", "Romeo"], occupants)
    romeo.drain(romeo.chats)
    nurse.send_message(mto=ROOM + "/Romeo", mbody="psst", mtype="chat")
    private = await take(romeo.chats)
    check("muc: a private message from the occupant",
          (private["body"], str(private["from"])) == ("psst", ROOM + "/Nurse"), str(private))
    said = await archive(romeo, jid=slixmpp.JID(ROOM))
    check("muc: the room's archive", said == ["hi all"], said)

    # PEP (XEP-0163): a mood reaches a contact whose capabilities ask for it.
    romeo.plugin["xep_0163"].add_interest("http://jabber.org/protocol/mood")
    await romeo.plugin["xep_0115"].update_caps()
    # The server learns the new capabilities by asking Romeo's client: until it has, a mood
    # is not for Romeo. Publish again until one arrives.
    mood = None
    for _ in range(STEP):
        await juliet.plugin["xep_0107"].publish_mood("happy", "in love")
        mood = await nothing(romeo.moods)
        if mood is not None:
            break
    check("pep: a mood notification",
          mood is not None and mood["pubsub_event"]["items"]["item"]["mood"]["value"] == "happy",
          str(mood))

    # Blocking (XEP-0191).
    await romeo.plugin["xep_0191"].block(["juliet@localhost"])
    blocked = await romeo.plugin["xep_0191"].get_blocked()
    listed = [item["jid"] for item in blocked["blocklist"]["items"]]
    check("blocking: the list", [str(jid) for jid in listed] == ["juliet@localhost"], listed)
    romeo.drain(romeo.chats)
    juliet.send_message(mto="romeo@localhost", mbody="blocked?", mtype="chat")
    leaked = await nothing(romeo.chats)
    check("blocking: nothing arrives", leaked is None, str(leaked))

    # Every session is still there: none was cut for what it acknowledged (XEP-0198).
    for user in (juliet, garden, romeo, tablet, nurse):
        try:
            await user.plugin["xep_0199"].ping(jid="localhost", timeout=STEP)
            alive = True
        except Exception as error:  # the library raises its own error types
            alive = repr(error)
        check(f"sm: {user.boundjid} still connected", alive is True, alive)

    for user in (juliet, garden, romeo, tablet, nurse):
        user.disconnect()
    await asyncio.sleep(0.3)


def overdue(*_):
    print("FAIL timeout: the whole run took over 90 s", flush=True)
    sys.exit(1)


signal.signal(signal.SIGALRM, overdue)
signal.alarm(90)
try:
    asyncio.run(main())
except asyncio.TimeoutError:
    failed.append("a step timed out")
    print("FAIL a step timed out", flush=True)
sys.exit(1 if failed else 0)
