// The burrow web page: polls /api/state and renders it; adds and starts/stops torrents
// through the Transmission RPC. Text from the daemon (torrent names come from the network)
// is only ever set with textContent, never parsed as HTML.
"use strict";

let sessionId = "";

async function rpc(method, args) {
  for (let attempt = 0; attempt < 2; attempt++) {
    const r = await fetch("/transmission/rpc", {
      method: "POST",
      headers: { "X-Transmission-Session-Id": sessionId, "Content-Type": "application/json" },
      body: JSON.stringify({ method: method, arguments: args }),
    });
    if (r.status === 409) {
      sessionId = r.headers.get("X-Transmission-Session-Id") || "";
      continue;
    }
    return r.json();
  }
  throw new Error("RPC session handshake failed");
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function bytes(n) {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
}

function rate(n) { return n < 1 ? "–" : bytes(n) + "/s"; }

function yesNo(node, value, unknownText) {
  node.className = value === true ? "yes" : value === false ? "no" : "unknown";
  node.textContent = value === true ? "working" : value === false ? "not working" : unknownText;
}

function renderTorrents(list) {
  const body = document.querySelector("#torrents tbody");
  body.replaceChildren();
  document.getElementById("empty").hidden = list.length > 0;
  for (const t of list) {
    const tr = el("tr");
    tr.dataset.hash = t.hash;
    tr.appendChild(el("td", t.name, "name"));
    tr.appendChild(el("td", t.error ? t.state + ": " + t.error : t.state, t.error ? "state-error" : ""));
    const pct = (t.progress * 100).toFixed(1) + "%";
    const cell = el("td");
    const bar = el("div", null, "bar");
    const fill = el("div", null, "fill" + (t.state === "downloading" ? " downloading" : ""));
    fill.style.width = pct;
    bar.appendChild(fill);
    bar.appendChild(el("span", pct, "label"));
    cell.appendChild(bar);
    tr.appendChild(cell);
    tr.appendChild(el("td", t.size > 0 ? bytes(t.size) : "?"));
    tr.appendChild(el("td", rate(t.down_rate)));
    tr.appendChild(el("td", rate(t.up_rate)));
    tr.appendChild(el("td", t.peers));
    tr.appendChild(el("td", t.ratio.toFixed(2)));
    const act = el("td");
    const stopped = t.state === "stopped";
    const btn = el("button", stopped ? "Start" : "Stop");
    btn.addEventListener("click", () => rpc(stopped ? "torrent-start" : "torrent-stop", { ids: [t.id] }).then(refresh));
    act.appendChild(btn);
    tr.appendChild(act);
    body.appendChild(tr);
  }
}

function renderConnectivity(c) {
  document.getElementById("c-port").textContent = c.listen_port;
  // Until the NAT report exists, inbound is only known to work once a peer has connected.
  yesNo(document.getElementById("c-in-tcp"), c.inbound_tcp !== null ? c.inbound_tcp : (c.inbound_tcp_seen ? true : null), "no incoming connection yet");
  yesNo(document.getElementById("c-in-udp"), c.inbound_udp !== null ? c.inbound_udp : (c.inbound_utp_seen ? true : null), "no incoming connection yet");
  const unknown = "not reported yet";
  const set = (id, v) => {
    const n = document.getElementById(id);
    n.textContent = v === null || v === undefined ? unknown : v;
    n.className = v === null || v === undefined ? "unknown" : "";
  };
  set("c-nat", c.nat_behaviour);
  set("c-ext", [c.external_ipv4, c.external_ipv6].filter(Boolean).join(", ") || null);
  set("c-gw", c.gateway);
  set("c-advice", c.advice);
  const maps = document.getElementById("c-mappings");
  maps.replaceChildren();
  if (!c.mappings || c.mappings.length === 0) {
    maps.appendChild(el("li", c.nat_reported ? "none" : unknown, "unknown"));
  } else {
    for (const m of c.mappings) {
      maps.appendChild(el("li", m.transport + " " + m.internal + " → " + m.external + " via " + m.protocol + " (" + m.lease_secs + " s)"));
    }
  }
  const body = document.querySelector("#routes tbody");
  body.replaceChildren();
  const names = new Set(Object.keys(c.routes).concat(Object.keys(c.route_totals)));
  if (names.size === 0) {
    const tr = el("tr");
    const td = el("td", "no connections yet", "unknown");
    td.colSpan = 3;
    tr.appendChild(td);
    body.appendChild(tr);
  }
  for (const r of Array.from(names).sort()) {
    const tr = el("tr");
    tr.appendChild(el("td", r.replace("_", " ")));
    tr.appendChild(el("td", c.routes[r] || 0));
    tr.appendChild(el("td", c.route_totals[r] || 0));
    body.appendChild(tr);
  }
}

async function refresh() {
  try {
    const r = await fetch("/api/state", { cache: "no-store" });
    const s = await r.json();
    document.getElementById("summary").textContent =
      s.torrents.length + " torrents · ↓ " + rate(s.down_rate) + " · ↑ " + rate(s.up_rate) + " · port " + s.port;
    renderTorrents(s.torrents);
    renderConnectivity(s.connectivity);
  } catch (e) {
    document.getElementById("summary").textContent = "cannot reach the daemon: " + e;
  }
}

document.getElementById("add-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = document.getElementById("magnet");
  const out = document.getElementById("add-result");
  try {
    const r = await rpc("torrent-add", { filename: input.value.trim() });
    out.textContent = r.result === "success" ? "added" : r.result;
    if (r.result === "success") input.value = "";
  } catch (e) {
    out.textContent = String(e);
  }
  refresh();
});

refresh();
setInterval(refresh, 2000);
