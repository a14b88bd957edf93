import { defineStore } from 'pinia'
import { ref } from 'vue'
import { api, ApiError, ok, setCsrf, type Me } from '@/api/client'

/** Who is signed in. The session lives in an HttpOnly cookie; the CSRF token in memory. */
export const useSession = defineStore('session', () => {
  const me = ref<Me | null>(null)
  const loaded = ref(false)

  function adopt(signed: Me | null): void {
    me.value = signed
    setCsrf(signed?.csrf_token ?? null)
  }

  async function load(): Promise<Me | null> {
    try {
      adopt(await ok(api.GET('/api/v1/auth/me')))
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 401) throw e
      adopt(null)
    } finally {
      loaded.value = true
    }
    return me.value
  }

  async function login(username: string, password: string): Promise<Me> {
    const signed = await ok(api.POST('/api/v1/auth/login', { body: { username, password } }))
    adopt(signed)
    return signed
  }

  async function logout(): Promise<void> {
    try {
      await ok(api.POST('/api/v1/auth/logout'))
    } finally {
      adopt(null)
    }
  }

  return { me, loaded, load, login, logout }
})
