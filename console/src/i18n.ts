// zh-CN first; English for visitors and the vendor's engineers. Enum values the server
// sends (statuses, types) are translated here, never shown raw.
import { createI18n } from 'vue-i18n'

const zh = {
  app: { title: '12349 养老服务热线', logout: '退出', lang: 'English' },
  nav: { board: '接警台', orders: '工单', wallboard: '大屏', reports: '报表', family: '家属', provider: '服务商' },
  login: {
    title: '登录', username: '用户名', password: '密码', submit: '登录', wrong: '用户名或密码错误',
    limited: '失败次数过多，请稍后再试', noview: '此账号没有可用的控制台视图',
  },
  call: {
    ringing: '来电振铃', answered: '通话中', ended: '已挂断', presenceUnknown: '状态未知', unknown: '未知来电', caller: '来电号码', age: '{n}岁', care: '照护等级', medical: '病史备注',
    devices: '设备', battery: '电量', online: '在线', offline: '离线', contacts: '联系人', recent: '近期事件',
    orders: '近期工单', balance: '本月服务余额', none: '无',
    newIncident: '建紧急事件', newOrder: '建服务工单', callBack: '回拨', callContact: '拨打联系人', quickCreate: '快速建档',
    name: '姓名', address: '地址', birth: '出生日期', phone: '电话', save: '保存', created: '已建档',
    service: '服务项目', placed: '呼叫已发起',
  },
  agent: {
    state: '坐席状态', free: '空闲', on_call: '通话中', ringing: '振铃', paused: '暂停', offline: '未登录',
    pause: '暂停', unpause: '恢复', reason: '暂停原因', reasons: { lunch: '午餐', training: '培训', break: '小休', meeting: '会议' },
    unavailable: '电话系统未连接',
  },
  board: {
    title: '待处理警情', empty: '暂无待处理警情', since: '已等待', next: '下一步', ack: '受理', dispatch: '派单', choose: '选择服务商',
    callDevice: '回拨设备', callFamily: '联系家属', command: '设备指令', resolve: '办结', cancel: '取消', note: '备注',
    cancelNote: '取消原因', newAlarm: '新警情', provider: '服务商', open: '详情', all: '全部', filter: '筛选',
  },
  incident: {
    timeline: '处置时间线', map: '位置图', ranking: '派单排序依据', reasons: '理由', excluded: '排除', eta: '预计{n}分钟',
    circle: '15分钟服务圈', elder: '老人', enroute: '服务人员位置', escalation: '升级步骤', notifications: '通知',
  },
  orders: {
    title: '工单看板', noShow: '未上门', late: '接单超时', far: '签到位置偏远', followUps: '待回访', complaints: '临期投诉',
    deadline: '截止', created: '创建于', scheduled: '预约',
  },
  wall: {
    title: '坐席监控大屏', waiting: '排队等待', longest: '最长等待', within: '{n}秒内接通', target: '目标', abandoned: '放弃',
    offered: '呼入', answered: '接通', agents: '坐席', alarms: '未结警情', handling: '平均处置时长', escalations: '升级中',
    busyProviders: '忙碌服务商', talk: '通话时长', handled: '接听数',
  },
  reports: { title: '统计报表', month: '月份', download: '下载', calls: '呼叫统计', period: '时段' },
  family: { title: '家属服务', alerts: '提醒', confirm: '我在路上', confirmed: '已告知客服您在路上', progress: '处置进度', none: '暂无提醒' },
  provider: {
    title: '服务商', offers: '派单', jobs: '工单', accept: '接单', decline: '拒绝', enRoute: '出发', onScene: '到达', done: '完成',
    checkIn: '签到', checkOut: '签退', minutes: '服务时长(分钟)', none: '暂无派单', located: '已获取定位',
  },
  status: {
    open: '待受理', acknowledged: '已受理', dispatched: '已派单', accepted: '已接单', en_route: '赶往中', on_scene: '已到场',
    resolved: '已办结', cancelled: '已取消', offered: '待接单', declined: '已拒绝', expired: '已超时', withdrawn: '已撤回', done: '已完成',
    requested: '已申请', assessed: '已评估', scheduled: '已预约', started: '服务中', completed: '已完成', referred: '已转介',
    due: '待回访', overdue: '逾期', received: '已受理', investigating: '调查中', upheld: '属实', rejected: '不属实', closed: '已结案',
    pending: '待执行', answered: '已接通', abandoned: '放弃', timeout: '超时', no_answer: '无人接听', busy: '忙线', failed: '失败', ended: '已结束',
  },
  type: {
    sos: '紧急呼救', fall: '跌倒', emergency: '紧急情况', health: '健康异常', service_request: '服务申请', consultation: '咨询',
    complaint: '投诉', referral: '转介', follow_up: '回访', low_battery: '电量低', power_loss: '断电', geofence_exit: '离开安全区',
    heart_rate_abnormal: '心率异常', inactivity: '长时间无活动', device_offline: '设备离线',
  },
  track: { acknowledge: '受理', provider: '派单', family: '家属', emergency: '紧急处置', supervisor: '主管' },
  severity: { low: '低', medium: '中', high: '高', critical: '危急' },
  care: { self_care: '自理', mild: '轻度失能', moderate: '中度失能', severe: '重度失能', partly_disabled: '半失能', dementia: '失智' },
  living: { alone: '独居', empty_nest: '空巢', with_family: '与家人同住', institution: '机构' },
  service: {
    meals: '助餐', cleaning: '助洁', bathing: '助浴', medical_escort: '助医', mobility: '助行', daily_care: '生活照料',
    rehab_nursing: '康复护理', companionship: '精神慰藉', emergency_rescue: '紧急救援', legal_aid: '法律援助',
    home_adaptation: '适老化改造', assistive_rental: '辅具租赁', caregiver_training: '照护培训', visit: '上门探访',
  },
  command: { call_back: '回拨', locate: '定位', play_message: '播放语音', set_heartbeat_interval: '心跳间隔', silence_alarm: '静音' },
  timeline: {
    opened: '警情产生', 'signal.merged': '信号合并', acknowledged: '已受理', 'offer.sent': '派单', 'offer.accepted': '服务商接单',
    'offer.declined': '服务商拒单', 'provider.en_route': '服务人员出发', 'provider.on_scene': '服务人员到场', 'provider.done': '服务完成',
    'escalation.started': '启动升级流程', 'escalation.step': '升级步骤执行', 'escalation.skipped': '升级步骤跳过', 'escalation.none': '无适用流程',
    'family.on_the_way': '家属在路上', family_notified: '已通知家属', 'routing.no_candidate': '无可派服务商', 'routing.skipped': '跳过派单',
    resolved: '已办结', cancelled: '已取消', system: '系统',
  },
  common: { ok: '确定', cancel: '取消', loading: '加载中', error: '出错了', refresh: '刷新', live: '实时', reconnecting: '正在重连' },
}

type Messages = typeof zh

const en: Messages = {
  app: { title: '12349 Elderly-care Hotline', logout: 'Sign out', lang: '中文' },
  nav: { board: 'Alarms', orders: 'Work orders', wallboard: 'Wallboard', reports: 'Reports', family: 'Family', provider: 'Provider' },
  login: {
    title: 'Sign in', username: 'User name', password: 'Password', submit: 'Sign in', wrong: 'Wrong user name or password',
    limited: 'Too many failed sign-ins; try again later', noview: 'This account has no console view',
  },
  call: {
    ringing: 'Incoming call', answered: 'On the call', ended: 'Hung up', presenceUnknown: 'unknown', unknown: 'Unknown caller', caller: 'Caller', age: '{n} yrs', care: 'Care level', medical: 'Medical notes',
    devices: 'Devices', battery: 'Battery', online: 'online', offline: 'offline', contacts: 'Contacts', recent: 'Recent incidents',
    orders: 'Recent work orders', balance: 'Entitlement this month', none: 'none',
    newIncident: 'New incident', newOrder: 'New service request', callBack: 'Call back', callContact: 'Call contact',
    quickCreate: 'Quick register', name: 'Name', address: 'Address', birth: 'Birth date', phone: 'Phone', save: 'Save',
    created: 'Registered', service: 'Service', placed: 'Call placed',
  },
  agent: {
    state: 'Queue state', free: 'Free', on_call: 'On a call', ringing: 'Ringing', paused: 'Paused', offline: 'Logged out',
    pause: 'Pause', unpause: 'Unpause', reason: 'Reason', reasons: { lunch: 'Lunch', training: 'Training', break: 'Break', meeting: 'Meeting' },
    unavailable: 'Telephony not connected',
  },
  board: {
    title: 'Open alarms', empty: 'No open alarms', since: 'Waiting', next: 'Next step', ack: 'Acknowledge', dispatch: 'Dispatch',
    choose: 'Choose provider', callDevice: 'Call device', callFamily: 'Call family', command: 'Device command', resolve: 'Resolve',
    cancel: 'Cancel', note: 'Note', cancelNote: 'Why cancel', newAlarm: 'New alarm', provider: 'Provider', open: 'Details',
    all: 'All', filter: 'Filter',
  },
  incident: {
    timeline: 'Timeline', map: 'Map', ranking: 'Ranking reasons', reasons: 'Reasons', excluded: 'Excluded', eta: '{n} min away',
    circle: '15-minute circle', elder: 'Elder', enroute: 'Provider position', escalation: 'Escalation steps', notifications: 'Notifications',
  },
  orders: {
    title: 'Work orders', noShow: 'No-show', late: 'Late acceptance', far: 'Far check-in', followUps: 'Follow-ups due',
    complaints: 'Complaints near deadline', deadline: 'Deadline', created: 'Created', scheduled: 'Scheduled',
  },
  wall: {
    title: 'Supervisor wallboard', waiting: 'Calls waiting', longest: 'Longest wait', within: 'Answered ≤ {n} s', target: 'Target',
    abandoned: 'Abandoned', offered: 'Offered', answered: 'Answered', agents: 'Operators', alarms: 'Open alarms',
    handling: 'Avg handling', escalations: 'Escalations running', busyProviders: 'Providers busy', talk: 'Talk time', handled: 'Answered',
  },
  reports: { title: 'Reports', month: 'Month', download: 'Download', calls: 'Call statistics', period: 'Period' },
  family: { title: 'Family', alerts: 'Alerts', confirm: "I'm on my way", confirmed: 'The hotline knows you are on your way', progress: 'Progress', none: 'No alerts' },
  provider: {
    title: 'Provider', offers: 'Offers', jobs: 'Jobs', accept: 'Accept', decline: 'Decline', enRoute: 'En route', onScene: 'On scene',
    done: 'Done', checkIn: 'Check in', checkOut: 'Check out', minutes: 'Minutes served', none: 'No offers', located: 'Location taken',
  },
  status: {
    open: 'Open', acknowledged: 'Acknowledged', dispatched: 'Dispatched', accepted: 'Accepted', en_route: 'En route', on_scene: 'On scene',
    resolved: 'Resolved', cancelled: 'Cancelled', offered: 'Offered', declined: 'Declined', expired: 'Expired', withdrawn: 'Withdrawn',
    done: 'Done', requested: 'Requested', assessed: 'Assessed', scheduled: 'Scheduled', started: 'In service', completed: 'Completed',
    referred: 'Referred', due: 'Due', overdue: 'Overdue', received: 'Received', investigating: 'Investigating', upheld: 'Upheld',
    rejected: 'Rejected', closed: 'Closed', pending: 'Pending', answered: 'Answered', abandoned: 'Abandoned', timeout: 'Timed out',
    no_answer: 'No answer', busy: 'Busy', failed: 'Failed', ended: 'Ended',
  },
  type: {
    sos: 'SOS', fall: 'Fall', emergency: 'Emergency', health: 'Health', service_request: 'Service request', consultation: 'Consultation',
    complaint: 'Complaint', referral: 'Referral', follow_up: 'Follow-up', low_battery: 'Low battery', power_loss: 'Power loss',
    geofence_exit: 'Left safe zone', heart_rate_abnormal: 'Abnormal heart rate', inactivity: 'Inactivity', device_offline: 'Device offline',
  },
  track: { acknowledge: 'Acknowledge', provider: 'Provider', family: 'Family', emergency: 'Emergency', supervisor: 'Supervisor' },
  severity: { low: 'Low', medium: 'Medium', high: 'High', critical: 'Critical' },
  care: { self_care: 'Self-care', mild: 'Mild', moderate: 'Moderate', severe: 'Severe', partly_disabled: 'Partly disabled', dementia: 'Dementia' },
  living: { alone: 'Alone', empty_nest: 'Empty nest', with_family: 'With family', institution: 'Institution' },
  service: {
    meals: 'Meals', cleaning: 'Cleaning', bathing: 'Bathing', medical_escort: 'Medical escort', mobility: 'Mobility',
    daily_care: 'Daily care', rehab_nursing: 'Rehab nursing', companionship: 'Companionship', emergency_rescue: 'Emergency rescue',
    legal_aid: 'Legal aid', home_adaptation: 'Home adaptation', assistive_rental: 'Assistive rental',
    caregiver_training: 'Caregiver training', visit: 'Visit',
  },
  command: { call_back: 'Call back', locate: 'Locate', play_message: 'Play message', set_heartbeat_interval: 'Heartbeat', silence_alarm: 'Silence' },
  timeline: {
    opened: 'Opened', 'signal.merged': 'Signal merged', acknowledged: 'Acknowledged', 'offer.sent': 'Offer sent', 'offer.accepted': 'Offer accepted',
    'offer.declined': 'Offer declined', 'provider.en_route': 'Provider en route', 'provider.on_scene': 'Provider on scene', 'provider.done': 'Provider done',
    'escalation.started': 'Escalation started', 'escalation.step': 'Escalation step', 'escalation.skipped': 'Step skipped', 'escalation.none': 'No policy',
    'family.on_the_way': 'Family on the way', family_notified: 'Family notified', 'routing.no_candidate': 'No provider available', 'routing.skipped': 'Routing skipped',
    resolved: 'Resolved', cancelled: 'Cancelled', system: 'System',
  },
  common: { ok: 'OK', cancel: 'Cancel', loading: 'Loading', error: 'Error', refresh: 'Refresh', live: 'Live', reconnecting: 'Reconnecting' },
}

export type Locale = 'zh-CN' | 'en'
const saved = (typeof localStorage !== 'undefined' && localStorage.getItem('hotline.locale')) as Locale | null

export const i18n = createI18n({
  legacy: false,
  locale: saved === 'en' ? 'en' : 'zh-CN',
  fallbackLocale: 'zh-CN',
  messages: { 'zh-CN': zh, en },
})

export function setLocale(locale: Locale): void {
  i18n.global.locale.value = locale
  localStorage.setItem('hotline.locale', locale)
  document.documentElement.lang = locale
}

/** A server enum value in words, or the value itself when there is no word for it yet. */
export function label(group: keyof Messages, value: string | null | undefined): string {
  if (!value) return ''
  // Keys such as "offer.sent" hold a dot, which vue-i18n reads as a path: look them up whole.
  const table = (i18n.global.locale.value === 'en' ? en : zh)[group] as Record<string, unknown>
  const word = table[value]
  return typeof word === 'string' ? word : value
}
