import { defineStore } from 'pinia'
import { ref } from 'vue'
import type { FeedMessage } from '@/api/client'

export type Listener = (message: FeedMessage) => void

/**
 * The console feed (/api/v1/ws). One socket per tab; it reconnects with ?since=SEQ so
 * nothing is missed across a blip, and a "resync" tells every view to reload.
 */
export const useFeed = defineStore('feed', () => {
  const connected = ref(false)
  const listeners = new Set<Listener>()
  let socket: WebSocket | null = null
  let lastSeq: string | null = null
  let retry = 0
  let timer: ReturnType<typeof setTimeout> | null = null
  let wanted = false

  function on(listener: Listener): () => void {
    listeners.add(listener)
    return () => listeners.delete(listener)
  }

  function deliver(message: FeedMessage): void {
    const seq = 'seq' in message ? message.seq : null
    if (seq) lastSeq = seq
    for (const l of listeners) l(message)
  }

  function connect(): void {
    wanted = true
    if (socket) return
    const proto = location.protocol === 'https:' ? 'wss' : 'ws'
    const since = lastSeq ? `?since=${encodeURIComponent(lastSeq)}` : ''
    const ws = new WebSocket(`${proto}://${location.host}/api/v1/ws${since}`)
    socket = ws
    ws.onopen = () => {
      connected.value = true
      retry = 0
    }
    ws.onmessage = (ev: MessageEvent<string>) => {
      try {
        deliver(JSON.parse(ev.data) as FeedMessage)
      } catch (e) {
        console.warn('feed: unreadable message', e)
      }
    }
    ws.onclose = () => {
      connected.value = false
      socket = null
      if (!wanted) return
      // Backoff with jitter, capped at 10 s, so a restarted server is not stampeded.
      const delay = Math.min(10_000, 500 * 2 ** retry) * (0.5 + Math.random() / 2)
      retry += 1
      timer = setTimeout(connect, delay)
    }
  }

  function close(): void {
    wanted = false
    if (timer) clearTimeout(timer)
    socket?.close()
    socket = null
  }

  return { connected, on, connect, close, deliver }
})
