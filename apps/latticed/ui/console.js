// The console's entry point: the token form, the connection banner, and
// the four panels (members, services, config, events).
import { onConnection, setToken, token } from "./api.js";
import * as config from "./config.js";
import * as members from "./members.js";
import * as services from "./services.js";

function showToken() {
  document.getElementById("token-state").textContent = token() ? "token set for this tab" : "no token";
}

function setupToken() {
  const form = document.getElementById("token-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("token");
    setToken(input.value.trim());
    input.value = "";
    showToken();
  });
  document.getElementById("token-forget").addEventListener("click", () => {
    setToken("");
    showToken();
  });
  showToken();
}

function setupConnection() {
  const banner = document.getElementById("connection");
  const notice = document.getElementById("notice");
  let timer = null;
  onConnection((summary) => {
    clearInterval(timer);
    banner.dataset.state = summary.state;
    notice.hidden = summary.state !== "refused";
    if (summary.state === "refused")
      notice.textContent = "This daemon needs a token to read its registry: enter it above.";
    const show = () => {
      if (summary.state === "live") banner.textContent = "Live";
      else if (summary.state === "refused") banner.textContent = "Token needed";
      else banner.textContent = `Reconnecting… next try in ${Math.max(0, Math.ceil((summary.retryAt - Date.now()) / 1000))} s`;
    };
    show();
    if (summary.state === "reconnecting") timer = setInterval(show, 1000);
  });
}

setupToken();
setupConnection();
members.start();
services.start();
config.start();
