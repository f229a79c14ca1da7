// The simulator's chat view: live updates by polling, and card clicks / texts sent with fetch.
// Without this script the page still works: forms post and redirect back, a reload shows news.
"use strict";

(function () {
  const root = document.querySelector("[data-chat-root]");
  if (!root) return;
  const user = root.dataset.user;
  const conv = root.dataset.conv;
  const list = document.getElementById("conversation-list");
  const pane = document.getElementById("messages");
  const empty = document.getElementById("empty");
  const toast = document.getElementById("toast");
  const live = document.getElementById("live");
  const POLL_MS = 1000;
  let revision = root.dataset.revision;
  let inFlight = null;
  let again = false;
  let toastTimer = null;

  function showToast(text) {
    toast.textContent = text;
    toast.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { toast.hidden = true; }, 4000);
  }

  function nearBottom() {
    return pane.scrollHeight - pane.scrollTop - pane.clientHeight < 60;
  }

  function scrollToBottom() {
    pane.scrollTop = pane.scrollHeight;
  }

  function makeItem(item) {
    const wrapper = document.createElement("div");
    wrapper.className = "item";
    wrapper.dataset.key = item.key;
    wrapper.dataset.hash = item.hash;
    wrapper.innerHTML = item.html;  // server-rendered and escaped; scripts inside innerHTML never run
    return wrapper;
  }

  // Replace only the items whose content changed, so choices in untouched cards survive an update.
  function patchItems(items) {
    const stick = nearBottom();
    const old = new Map();
    for (const el of pane.children) old.set(el.dataset.key, el);
    let added = false;
    let cursor = pane.firstElementChild;
    for (const item of items) {
      let el = old.get(item.key);
      if (el) {
        old.delete(item.key);
        if (el.dataset.hash !== item.hash) {
          const fresh = makeItem(item);
          el.replaceWith(fresh);
          if (cursor === el) cursor = fresh;
          el = fresh;
        }
      } else {
        el = makeItem(item);
        added = true;
      }
      if (el !== cursor) pane.insertBefore(el, cursor);
      cursor = el.nextElementSibling;
    }
    for (const el of old.values()) el.remove();
    if (empty) empty.hidden = items.length > 0;
    if (stick || added) scrollToBottom();
  }

  async function poll() {
    const query = new URLSearchParams({ c: conv, since: revision });
    const resp = await fetch(`/_sim/chat/${encodeURIComponent(user)}/updates?${query}`, {
      headers: { Accept: "application/json" },
      cache: "no-store",
    });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    const data = await resp.json();
    live && live.classList.remove("offline");
    if (!data.changed) return;
    revision = String(data.revision);
    list.innerHTML = data.conversations_html;
    if (pane) patchItems(data.items);
    root.dataset.revision = revision;
  }

  // One poll at a time; a refresh asked for meanwhile runs right after.
  function refresh() {
    if (inFlight) {
      again = true;
      return inFlight;
    }
    inFlight = poll()
      .catch(() => { live && live.classList.add("offline"); })
      .finally(() => {
        inFlight = null;
        if (again) {
          again = false;
          refresh();
        }
      });
    return inFlight;
  }

  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("form[data-action]");
    if (!form) return;
    event.preventDefault();
    if (form.classList.contains("pending")) return;
    const body = new URLSearchParams(new FormData(form, event.submitter));
    const buttons = [...form.querySelectorAll("button")].filter((b) => !b.disabled);
    form.classList.add("pending");
    buttons.forEach((b) => { b.disabled = true; });
    const input = form.querySelector("[name=content]");
    if (input) input.value = "";
    refreshSoon();
    try {
      const resp = await fetch(form.action, { method: "POST", body, headers: { Accept: "application/json" } });
      const data = await resp.json().catch(() => ({}));
      if (!resp.ok) {
        showToast(data.error || `操作失败（HTTP ${resp.status}）`);
        if (input && !input.value) input.value = body.get("content") || "";
      } else if (data.notice) {
        showToast(data.notice);
      }
    } catch (err) {
      showToast("无法连接模拟器");
    } finally {
      form.classList.remove("pending");
      buttons.forEach((b) => { b.disabled = false; });
      await refresh();
      if (input) input.focus();
    }
  });

  // The typed text is recorded before the bot answers: show it while the callback is under way.
  function refreshSoon() {
    setTimeout(refresh, 150);
  }

  if (pane) scrollToBottom();
  setInterval(refresh, POLL_MS);
})();
