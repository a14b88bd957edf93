// Alarm tones from the Web Audio API: no sound files to ship, and a distinct pitch and
// rhythm per severity so an operator can tell a fall from a low battery without looking.
const TONES: Record<string, { hz: number; beeps: number }> = {
  critical: { hz: 1046, beeps: 4 },
  high: { hz: 880, beeps: 3 },
  medium: { hz: 660, beeps: 2 },
  low: { hz: 440, beeps: 1 },
}

let ctx: AudioContext | null = null

export function playAlarm(severity: string): void {
  const tone = TONES[severity] ?? TONES.low
  try {
    ctx ??= new AudioContext()
    for (let i = 0; i < tone.beeps; i++) {
      const osc = ctx.createOscillator()
      const gain = ctx.createGain()
      osc.frequency.value = tone.hz
      gain.gain.value = 0.2
      osc.connect(gain).connect(ctx.destination)
      const t = ctx.currentTime + i * 0.25
      osc.start(t)
      osc.stop(t + 0.15)
    }
  } catch {
    // No audio device (a headless test browser, a muted kiosk): the visual alert remains.
  }
}
