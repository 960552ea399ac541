/**
 * The terminal modes the console switches on, and switching them off again whatever happens:
 * the alternate screen (so the shell's scrollback is untouched), mouse reporting (SGR), a hidden
 * cursor. `restore` is idempotent and runs on quit, on signals and on a crash.
 */
const ALT_SCREEN_ON = "\x1b[?1049h";
const ALT_SCREEN_OFF = "\x1b[?1049l";
const MOUSE_ON = "\x1b[?1000h\x1b[?1006h";
const MOUSE_OFF = "\x1b[?1000l\x1b[?1006l";
const CURSOR_SHOW = "\x1b[?25h";
const CURSOR_HIDE = "\x1b[?25l";
const CLEAR_HOME = "\x1b[2J\x1b[H";

export class TerminalModes {
  private active = false;
  private readonly onExit = () => this.restore();

  constructor(
    private readonly out: NodeJS.WriteStream = process.stdout,
    private readonly input: NodeJS.ReadStream = process.stdin,
    private readonly mouse = true,
  ) {}

  enter(): void {
    if (this.active) return;
    this.active = true;
    this.out.write(ALT_SCREEN_ON + CLEAR_HOME + CURSOR_HIDE + (this.mouse ? MOUSE_ON : ""));
    process.on("exit", this.onExit);
  }

  /** Back to the shell's screen, with the cursor shown and the keyboard in cooked mode. */
  restore(): void {
    if (!this.active) return;
    this.active = false;
    process.off("exit", this.onExit);
    this.out.write((this.mouse ? MOUSE_OFF : "") + ALT_SCREEN_OFF + CURSOR_SHOW);
    if (this.input.isTTY) this.input.setRawMode(false);
  }

  /** Gives the terminal to another program (an editor) for the duration of `fn`. */
  suspend<T>(fn: () => T): T {
    this.out.write((this.mouse ? MOUSE_OFF : "") + ALT_SCREEN_OFF + CURSOR_SHOW);
    if (this.input.isTTY) this.input.setRawMode(false);
    try {
      return fn();
    } finally {
      if (this.input.isTTY) this.input.setRawMode(true);
      // Cursor parked on the last row, where ink expects it after a frame one line short of the screen.
      this.out.write(ALT_SCREEN_ON + CLEAR_HOME + `\x1b[${this.out.rows || 24};1H` + CURSOR_HIDE + (this.mouse ? MOUSE_ON : ""));
    }
  }

  /** After a resize the old frame may have been reflowed by the terminal: start from a clean screen. */
  clear(): void {
    if (this.active) this.out.write(CLEAR_HOME);
  }
}
