import { onUnmounted, ref, type Ref } from 'vue'

/** The current time, ticking every ``ms``; the timer ends with the component. */
export function useNow(ms = 1000): Ref<number> {
  const now = ref(Date.now())
  const timer = setInterval(() => (now.value = Date.now()), ms)
  onUnmounted(() => clearInterval(timer))
  return now
}

/** Run ``fn`` every ``ms`` while the component lives (a fallback beside the live feed). */
export function usePoll(fn: () => unknown, ms: number): void {
  const timer = setInterval(fn, ms)
  onUnmounted(() => clearInterval(timer))
}
