/**
 * Follows an SMTP AUTH exchange the proxy relays (RFC 4954): which mechanism, whether the next client line is a
 * SASL response (after a 334), and the user name where the mechanism shows it (PLAIN, LOGIN). Passwords are
 * never kept.
 */
import { decodeSaslUser } from '../smtp/sasl-user.js';

export class AuthTracker {
  mechanism: string | undefined;
  user: string | undefined;
  /** The upstream said 334: the next client line is a SASL response, not a command. */
  awaitingResponse = false;
  private steps = 0;

  /** The client sent AUTH <mechanism> [initial-response]. */
  start(mechanism: string, initial: string | undefined): void {
    this.mechanism = mechanism;
    this.user = undefined;
    this.steps = 0;
    this.awaitingResponse = false;
    if (initial !== undefined && initial !== '=') {
      this.user = decodeSaslUser(mechanism, initial, 0);
      this.steps = 1;
    }
  }

  /** The client sent a SASL response line (after a 334). */
  response(line: string): void {
    this.awaitingResponse = false;
    if (this.mechanism && this.user === undefined) this.user = decodeSaslUser(this.mechanism, line, this.steps);
    this.steps++;
  }
}
