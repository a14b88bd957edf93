import { defineStore } from 'pinia'
import { ref } from 'vue'
import { api, ok, type Provider } from '@/api/client'

export interface ElderBrief {
  id: string
  name: string
  address?: string
  age?: number
  lat?: number
  lon?: number
}

/** Names for ids: the board shows people and providers, never raw ids. */
export const useDirectory = defineStore('directory', () => {
  const elders = ref<Record<string, ElderBrief>>({})
  const providers = ref<Record<string, Provider>>({})
  const pending = new Map<string, Promise<void>>()

  function remember(e: ElderBrief | null | undefined): void {
    if (e?.id) elders.value[e.id] = { ...elders.value[e.id], ...e }
  }

  function elder(id: string | null | undefined): ElderBrief | undefined {
    if (!id) return undefined
    if (!elders.value[id] && !pending.has(id)) {
      pending.set(
        id,
        ok(api.GET('/api/v1/elders/{id}', { params: { path: { id } } }))
          .then((e) => remember(e))
          .catch(() => undefined)
          .finally(() => pending.delete(id)),
      )
    }
    return elders.value[id]
  }

  async function loadProviders(): Promise<void> {
    const page = await ok(api.GET('/api/v1/providers', { params: { query: { limit: 500 } } }))
    providers.value = Object.fromEntries(page.items.map((p) => [p.id, p]))
  }

  function providerName(id: string | null | undefined): string {
    if (!id) return ''
    return providers.value[id]?.name ?? id
  }

  return { elders, providers, remember, elder, loadProviders, providerName }
})
