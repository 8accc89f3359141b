// Signing in: password (+ a code where MFA is on), first-time MFA enrolment, launch links
// from a CRM, and signing out.

import { $, setText, show } from "./dom.js";
import { friendly } from "./text.js";

const LAUNCH_PARAMETERS = ["launch", "username"];

export class SignIn {
  constructor(ctx) {
    this.ctx = ctx;
    this.enrolmentToken = null;
    this.launch = null; // {tenant, username, launch} while a launch link is being used
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    $("enrol-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.verify();
    });
    $("enrol-continue").addEventListener("click", () => this.afterEnrolment());
  }

  show(message = "") {
    this.ctx.screen("login");
    setText("login-message", message);
    $("login-password").value = "";
    $("login-otp").value = "";
    show("login-otp-row", Boolean(this.launch));
    this.lockToLaunch(Boolean(this.launch));
    const first = ["login-tenant", "login-username", "login-password"]
      .map((id) => $(id))
      .find((input) => !input.value && !input.hidden && !input.readOnly);
    (this.launch ? $("login-otp") : (first ?? $("login-password"))).focus();
  }

  lockToLaunch(locked) {
    for (const id of ["login-tenant", "login-username"]) $(id).readOnly = locked;
    // A launch link stands in for the password; only the code may still be asked.
    $("login-password").hidden = locked;
    $("login-password").labels[0].hidden = locked;
  }

  // `/?tenant=T&username=U&launch=X` from the CRM: sign in without a password.
  async tryLaunch(query) {
    if (!query.get("launch")) return false;
    this.launch = {
      tenant: query.get("tenant") ?? "",
      username: query.get("username") ?? "",
      launch: query.get("launch"),
    };
    $("login-tenant").value = this.launch.tenant;
    $("login-username").value = this.launch.username;
    return this.sendLaunch(null);
  }

  async sendLaunch(otp) {
    try {
      const answer = await this.ctx.api.call(
        "POST",
        "/api/v1/auth/launch",
        { ...this.launch, otp },
        { signingIn: true },
      );
      this.endLaunch();
      await this.ctx.signedIn(answer);
      return true;
    } catch (problem) {
      if (problem.code === "otp_required") {
        this.show(friendly(problem));
        return true;
      }
      this.endLaunch();
      this.show(friendly(problem));
      return true;
    }
  }

  // The link is single use: out of the address bar (and history) once it has been used.
  endLaunch() {
    this.launch = null;
    const url = new URL(location.href);
    for (const name of LAUNCH_PARAMETERS) url.searchParams.delete(name);
    history.replaceState(null, "", url);
  }

  async submit() {
    const otp = $("login-otp").value.trim() || null;
    if (this.launch) {
      await this.sendLaunch(otp);
      return;
    }
    const body = {
      tenant: $("login-tenant").value.trim(),
      username: $("login-username").value.trim(),
      password: $("login-password").value,
    };
    if (!body.tenant || !body.username || !body.password) {
      setText("login-message", "Enter your organisation, username and password.");
      return;
    }
    if (otp) body.otp = otp;
    $("login-submit").disabled = true;
    try {
      const answer = await this.ctx.api.call("POST", "/api/v1/auth/login", body, {
        signingIn: true,
      });
      $("login-password").value = "";
      await this.ctx.signedIn(answer);
    } catch (problem) {
      this.loginRefused(problem);
    } finally {
      $("login-submit").disabled = false;
    }
  }

  loginRefused(problem) {
    if (problem.code === "otp_required") {
      show("login-otp-row");
      $("login-otp").focus();
    } else if (problem.code === "mfa_enrolment_required") {
      this.enrol(problem.extra.enrolment_token);
      return;
    } else if (problem.code === "invalid_otp" || problem.code === "invalid_credentials") {
      $("login-otp").value = "";
    }
    setText("login-message", friendly(problem));
  }

  async enrol(token) {
    this.enrolmentToken = token;
    try {
      const started = await this.ctx.api.call(
        "POST",
        "/api/v1/auth/mfa/enroll",
        { enrolment_token: token },
        { signingIn: true },
      );
      // The QR code is an SVG drawn by the server; as an image it can run nothing. An
      // image needs the SVG namespace, which markup meant for inlining leaves out.
      const svg = started.qr_svg.replace(/^<svg(?![^>]*xmlns=)/, '<svg xmlns="http://www.w3.org/2000/svg"');
      $("enrol-qr").src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`;
      setText("enrol-secret", started.secret);
      setText("enrol-message", "");
      show("enrol-form");
      show("enrol-done", false);
      this.ctx.screen("enrol");
      $("enrol-otp").value = "";
      $("enrol-otp").focus();
    } catch (problem) {
      setText("login-message", friendly(problem));
    }
  }

  async verify() {
    const otp = $("enrol-otp").value.trim();
    if (!/^[0-9]{6}$/.test(otp)) {
      setText("enrol-message", "Enter the 6 digits your app shows.");
      return;
    }
    try {
      const done = await this.ctx.api.call(
        "POST",
        "/api/v1/auth/mfa/verify",
        { enrolment_token: this.enrolmentToken, otp },
        { signingIn: true },
      );
      this.enrolmentToken = null;
      $("enrol-secret").textContent = "";
      $("enrol-qr").removeAttribute("src");
      $("enrol-codes").replaceChildren(
        ...done.recovery_codes.map((code) => Object.assign(document.createElement("li"), {
          textContent: code,
        })),
      );
      show("enrol-form", false);
      show("enrol-done");
      $("enrol-continue").focus();
    } catch (problem) {
      setText("enrol-message", friendly(problem));
      $("enrol-otp").select();
    }
  }

  afterEnrolment() {
    $("enrol-codes").replaceChildren();
    this.show("Your authenticator app is set up. Sign in with your password and the next code it shows.");
    show("login-otp-row");
    $("login-password").focus();
  }
}
