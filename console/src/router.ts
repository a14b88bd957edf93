import { createRouter, createWebHistory, type RouteRecordRaw } from 'vue-router'
import { useSession } from '@/stores/session'

const STAFF = ['operator', 'dispatcher', 'supervisor', 'admin']
const SUPERVISORS = ['supervisor', 'admin']

declare module 'vue-router' {
  interface RouteMeta {
    roles?: string[]
    bare?: boolean
  }
}

const routes: RouteRecordRaw[] = [
  { path: '/login', component: () => import('@/views/LoginView.vue'), meta: { bare: true } },
  { path: '/', component: () => import('@/views/OperatorView.vue'), meta: { roles: STAFF } },
  { path: '/incidents/:id', component: () => import('@/views/IncidentView.vue'), meta: { roles: STAFF }, props: true },
  { path: '/orders', component: () => import('@/views/OrdersView.vue'), meta: { roles: STAFF } },
  { path: '/wallboard', component: () => import('@/views/WallboardView.vue'), meta: { roles: ['dispatcher', ...SUPERVISORS], bare: true } },
  { path: '/reports', component: () => import('@/views/ReportsView.vue'), meta: { roles: SUPERVISORS } },
  { path: '/family', component: () => import('@/views/FamilyView.vue'), meta: { roles: ['family'], bare: true } },
  { path: '/provider', component: () => import('@/views/ProviderView.vue'), meta: { roles: ['provider'], bare: true } },
  { path: '/none', component: () => import('@/views/NoView.vue'), meta: { bare: true } },
  { path: '/:rest(.*)*', redirect: '/' },
]

export const router = createRouter({ history: createWebHistory('/console/'), routes })

/** The role's own view: the server says where each role lands (SignedIn.home). */
export function homeOf(home: string): string {
  return home.replace(/^\/console/, '') || '/'
}

router.beforeEach(async (to) => {
  const session = useSession()
  if (!session.loaded) await session.load()
  if (to.path === '/login') return session.me ? homeOf(session.me.home) : true
  // A deep link comes back after sign-in; the bare address lands on the role's own view.
  if (!session.me) return { path: '/login', query: to.fullPath === '/' ? {} : { next: to.fullPath } }
  const roles = to.meta.roles
  if (roles && !roles.includes(session.me.user.role)) return homeOf(session.me.home)
  return true
})
