/* dirconnector reports: filter-as-you-type, sortable, paginated tables over the JSON
 * embedded in the page. No network, no eval, no innerHTML with data: every value from the
 * directory or the server reaches the page through textContent. */
(function () {
  "use strict";
  var SYM = { "+": "add", "~": "change", "-": "remove", ">": "link" };
  var data = JSON.parse(document.getElementById("dc-data").textContent);
  var grids = {};

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function fmt(n) { return Number(n).toLocaleString("en-US"); }
  function detailText(v) {
    if (v === null || v === undefined) { return ""; }
    if (typeof v === "string") { return v; }
    if (v.a) { return v.a.map(function (t) { return t[0] + " " + t[1] + " " + t[2]; }).join(" "); }
    if (v.m) { return v.m.join(" "); }
    return "";
  }
  function safeHref(h) { return typeof h === "string" && !/^[a-z][a-z0-9+.\-]*:/i.test(h) && h.indexOf("//") !== 0; }

  function Grid(root, spec) {
    this.root = root; this.spec = spec; this.rows = spec.rows;
    this.kind = -1; this.status = ""; this.text = ""; this.page = 0;
    this.size = spec.pageSize || 100;
    this.sortCol = spec.sort ? spec.sort[0] : 0; this.sortDir = spec.sort ? spec.sort[1] : 1;
    this.hay = null; this.sorted = null;
    this.build(); this.resort(); this.refilter();
  }
  Grid.prototype.build = function () {
    var self = this, spec = this.spec, bar = el("div", "toolbar");
    if (spec.kindCol >= 0) {
      var counts = {}, tabs = el("div", "tabs");
      tabs.setAttribute("role", "tablist");
      this.rows.forEach(function (r) { counts[r[spec.kindCol]] = (counts[r[spec.kindCol]] || 0) + 1; });
      var mk = function (k, label, n) {
        var b = el("button", null, label + " (" + fmt(n) + ")");
        b.type = "button"; b.setAttribute("role", "tab"); b.dataset.kind = String(k);
        b.setAttribute("aria-selected", k === -1 ? "true" : "false");
        b.addEventListener("click", function () { self.setKind(k); });
        tabs.appendChild(b);
      };
      mk(-1, "all", this.rows.length);
      spec.kinds.forEach(function (k, i) { if (counts[i]) { mk(i, k[1], counts[i]); } });
      this.tabs = tabs; bar.appendChild(tabs);
    }
    if (spec.statusCol >= 0) {
      var seen = {}, sel = el("select");
      sel.setAttribute("aria-label", "status");
      this.rows.forEach(function (r) { seen[r[spec.statusCol]] = (seen[r[spec.statusCol]] || 0) + 1; });
      sel.appendChild(el("option", null, "every status")).value = "";
      Object.keys(seen).sort().forEach(function (s) {
        sel.appendChild(el("option", null, s + " (" + fmt(seen[s]) + ")")).value = s;
      });
      sel.addEventListener("change", function () { self.status = sel.value; self.refilter(); });
      bar.appendChild(sel);
    }
    var input = el("input");
    input.type = "search"; input.placeholder = "Filter (any column)\u2026";
    input.setAttribute("aria-label", "filter");
    var timer = null;
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { self.text = input.value.trim().toLowerCase(); self.refilter(); },
        self.rows.length > 20000 ? 150 : 0);
    });
    bar.appendChild(input);
    this.shown = el("span", "shown"); bar.appendChild(this.shown);
    this.root.appendChild(bar);
    var table = el("table"), thead = el("thead"), tr = el("tr");
    this.heads = spec.columns.map(function (c, i) {
      var th = el("th", c.type === "num" ? "num" : null), b = el("button", null, c.label);
      b.type = "button";
      b.addEventListener("click", function () { self.sortBy(i); });
      th.appendChild(b); tr.appendChild(th); return th;
    });
    thead.appendChild(tr); table.appendChild(thead);
    this.tbody = el("tbody"); table.appendChild(this.tbody); this.root.appendChild(table);
    var pager = el("div", "pager");
    var btn = function (label, fn) {
      var b = el("button", null, label); b.type = "button";
      b.addEventListener("click", fn); pager.appendChild(b); return b;
    };
    this.first = btn("\u00ab first", function () { self.go(0); });
    this.prev = btn("\u2039 previous", function () { self.go(self.page - 1); });
    this.where = el("span", "muted"); pager.appendChild(this.where);
    this.next = btn("next \u203a", function () { self.go(self.page + 1); });
    this.last = btn("last \u00bb", function () { self.go(Infinity); });
    var sizes = el("select");
    sizes.setAttribute("aria-label", "rows per page");
    [50, 100, 500, 1000].forEach(function (n) {
      var o = sizes.appendChild(el("option", null, n + " per page")); o.value = String(n);
      if (n === self.size) { o.selected = true; }
    });
    sizes.addEventListener("change", function () { self.size = Number(sizes.value); self.go(0); });
    pager.appendChild(sizes);
    this.root.appendChild(pager);
  };
  Grid.prototype.key = function (r, c) {
    var col = this.spec.columns[c], v = r[c];
    if (col.type === "num") { return Number(v); }
    if (col.type === "kind") { return v; }
    if (col.type === "status") { var rank = this.spec.statusRank || {}; return (v in rank ? rank[v] : 50); }
    if (col.type === "link") { return String(v[0]).toLowerCase(); }
    if (col.type === "detail") { return detailText(v).toLowerCase(); }
    return String(v === null ? "" : v).toLowerCase();
  };
  Grid.prototype.resort = function () {
    var self = this, n = this.rows.length, keys = new Array(n), idx = new Array(n), c = this.sortCol,
      d = this.sortDir;
    for (var i = 0; i < n; i++) { keys[i] = self.key(self.rows[i], c); idx[i] = i; }
    idx.sort(function (a, b) {
      var x = keys[a], y = keys[b];
      return x < y ? -d : x > y ? d : a - b;
    });
    this.sorted = idx;
    this.heads.forEach(function (th, i) {
      if (i === c) { th.setAttribute("aria-sort", d > 0 ? "ascending" : "descending"); }
      else { th.removeAttribute("aria-sort"); }
    });
  };
  Grid.prototype.sortBy = function (c) {
    if (c === this.sortCol) { this.sortDir = -this.sortDir; } else { this.sortCol = c; this.sortDir = 1; }
    this.resort(); this.refilter();
  };
  Grid.prototype.setKind = function (k) {
    this.kind = k;
    if (this.tabs) {
      Array.prototype.forEach.call(this.tabs.children, function (b) {
        b.setAttribute("aria-selected", b.dataset.kind === String(k) ? "true" : "false");
      });
    }
    this.refilter();
  };
  Grid.prototype.haystack = function () {
    if (!this.hay) {
      var self = this, spec = this.spec;
      this.hay = this.rows.map(function (r) {
        return r.map(function (v, c) {
          var t = spec.columns[c].type;
          if (t === "kind") { return spec.kinds[v][1]; }
          if (t === "detail") { return detailText(v); }
          if (t === "link") { return v[0]; }
          return v === null ? "" : String(v);
        }).join("\u0001").toLowerCase();
      });
    }
    return this.hay;
  };
  Grid.prototype.refilter = function () {
    var spec = this.spec, rows = this.rows, k = this.kind, s = this.status, t = this.text;
    var hay = t ? this.haystack() : null, out = [];
    for (var j = 0; j < this.sorted.length; j++) {
      var i = this.sorted[j], r = rows[i];
      if (k >= 0 && r[spec.kindCol] !== k) { continue; }
      if (s && r[spec.statusCol] !== s) { continue; }
      if (t && hay[i].indexOf(t) < 0) { continue; }
      out.push(i);
    }
    this.visible = out; this.go(0);
  };
  Grid.prototype.go = function (p) {
    var pages = Math.max(1, Math.ceil(this.visible.length / this.size));
    this.page = Math.max(0, Math.min(p, pages - 1));
    this.render(pages);
  };
  Grid.prototype.cell = function (c, v) {
    var col = this.spec.columns[c], td = el("td", col.type === "num" ? "num" : null);
    if (col.type === "kind") {
      var k = this.spec.kinds[v];
      td.appendChild(el("span", "sym sym-" + SYM[k[2]], k[2]));
      td.appendChild(document.createTextNode(" " + k[1]));
    } else if (col.type === "status") {
      td.className = "st-" + String(v).replace(/[^a-z]+/g, "-"); td.textContent = v;
    } else if (col.type === "link") {
      td.className = "nowrap";
      if (v[1] && safeHref(v[1])) { var a = el("a", null, v[0]); a.setAttribute("href", v[1]); td.appendChild(a); }
      else { td.textContent = v[0]; }
    } else if (col.type === "detail") {
      this.detail(td, v);
    } else if (col.type === "num") {
      td.textContent = v === null ? "" : fmt(v);
    } else {
      td.textContent = v === null ? "" : String(v);
    }
    return td;
  };
  Grid.prototype.detail = function (td, v) {
    if (!v) { return; }
    if (typeof v === "string") { td.textContent = v; return; }
    if (v.a) {
      v.a.forEach(function (t, i) {
        if (i) { td.appendChild(el("br")); }
        var span = el("span", "attr");
        span.appendChild(el("span", "f", t[0] + ": "));
        span.appendChild(el("del", null, t[1]));
        span.appendChild(document.createTextNode(" \u2192 "));
        span.appendChild(el("ins", null, t[2]));
        td.appendChild(span);
      });
      return;
    }
    if (v.m) {
      var list = v.m, sign = v.s || "";
      var line = function (m) { return sign + m; };
      if (list.length <= 10) { td.textContent = list.map(line).join(", "); return; }
      td.appendChild(document.createTextNode(list.slice(0, 10).map(line).join(", ") + " \u2026 "));
      var det = el("details"), sum = el("summary", null, "all " + fmt(list.length) + " members");
      det.appendChild(sum);
      det.addEventListener("toggle", function () {
        if (det.open && det.children.length === 1) { det.appendChild(el("div", null, list.map(line).join(", "))); }
      }, { once: false });
      td.appendChild(det);
    }
  };
  Grid.prototype.render = function (pages) {
    var body = this.tbody, rows = this.rows, start = this.page * this.size;
    var end = Math.min(this.visible.length, start + this.size), frag = document.createDocumentFragment();
    for (var j = start; j < end; j++) {
      var r = rows[this.visible[j]], tr = el("tr");
      for (var c = 0; c < r.length; c++) { tr.appendChild(this.cell(c, r[c])); }
      frag.appendChild(tr);
    }
    if (end === start) {
      var tr0 = el("tr"), td0 = el("td", "muted", this.rows.length ? "Nothing matches the filter." : (this.spec.empty || "None."));
      td0.colSpan = this.spec.columns.length; tr0.appendChild(td0); frag.appendChild(tr0);
    }
    body.textContent = ""; body.appendChild(frag);
    var total = this.rows.length, n = this.visible.length;
    this.shown.textContent = n ? "showing " + fmt(start + 1) + "\u2013" + fmt(end) + " of " + fmt(n) +
      (n !== total ? " (filtered from " + fmt(total) + ")" : "") : "0 of " + fmt(total);
    this.where.textContent = "page " + fmt(this.page + 1) + " of " + fmt(pages);
    this.first.disabled = this.prev.disabled = this.page === 0;
    this.next.disabled = this.last.disabled = this.page >= pages - 1;
  };

  Array.prototype.forEach.call(document.querySelectorAll("[data-grid]"), function (root) {
    grids[root.dataset.grid] = new Grid(root, data.grids[root.dataset.grid]);
  });
  Array.prototype.forEach.call(document.querySelectorAll("[data-show-kind]"), function (b) {
    b.addEventListener("click", function () {
      var g = grids[b.dataset.target], k = Number(b.dataset.showKind);
      if (g) { g.setKind(k); g.root.scrollIntoView(); }
    });
  });
  window.dirconnectorGrids = grids;
  document.documentElement.setAttribute("data-ready-ms", String(Math.round(performance.now())));
  document.documentElement.setAttribute("data-ready", "1");
}());
