"""Every sentence a candidate reads, keyed by name.

Staff edit the wording here without touching logic. Placeholders are str.format fields; keep them.
Every message is short and ends with what to do next.
"""

# --- the steps of the conversation ----------------------------------------------------------
WELCOME = (
    "您好！这里是{office}毕业证书照片采集。\n"
    "采集时间：{window}。\n"
    "步骤：查询院校 → 选择学历层次 → 核对身份 → 填写手机号 → 阅读须知 → 上传证件照 → 支付{fee}元 → 等待审核（{review_hours}小时内）。\n"
    "随时发送“帮助”查看说明，“进度”查看进度，“人工”联系客服。"
)
ASK_INSTITUTION = "第一步：请输入院校名称“{institution}”（请完整输入这几个字）。"
WRONG_INSTITUTION = (
    "请不要输入您毕业学校的名称。\n"
    "请一字不差地输入：{institution}"
)
INSTITUTION_NOT_FOUND = "没有找到“{text}”。请输入：{institution}"
ASK_LEVEL = "已找到：{institution}\n请选择学历层次，回复数字：\n{levels}"
WRONG_LEVEL = "没有这个选项。请回复数字：\n{levels}"
LEVEL_FIRST = "请先选择学历层次，姓名和身份证号下一步再输入。请回复数字：\n{levels}"
ASK_IDENTITY = (
    "学历层次：{level}\n"
    "请输入本人姓名和身份证号，中间用空格隔开，例如：\n张三 110101199003071234"
)
ASK_ID_NUMBER = "姓名：{name}\n请再输入18位身份证号。"
PHONE_TOO_EARLY = "手机号下一步再填。请先输入本人姓名和18位身份证号，中间用空格隔开，例如：张三 110101199003071234"
ASK_NAME = "身份证号：{id_number}\n请再输入本人姓名。"
IDENTITY_PROBLEMS = {
    "name.missing": "请输入本人姓名（汉字）。",
    "name.characters": "姓名只能是汉字（少数民族姓名可用“·”），请重新输入姓名。",
    "name.length": "姓名应为2到30个汉字，请重新输入姓名。",
    "id.length": "身份证号应为18位，您输入了{length}位。请核对后重新输入。",
    "id.characters": "身份证号只能由数字和最后一位X组成。请核对后重新输入。",
    "id.region": "身份证号前两位不是有效的省份代码。请核对后重新输入。",
    "id.birthdate": "身份证号中的出生日期不正确。请核对第7到14位后重新输入。",
    "id.checksum": "身份证号最后一位校验不通过，可能有数字输错。请逐位核对后重新输入。",
    "name.phrase": "没有认出您的姓名。请只输入姓名和身份证号，例如：张三 110101199003071234",
}
ASK_PHONE = "已在毕业生名单中找到您。\n请输入本人11位手机号，审核结果会以短信通知您。"
WRONG_PHONE = "“{text}”不是有效的11位手机号。请重新输入，例如：13800138000"
# Name and ID number typed again at the phone step: they were already matched.
IDENTITY_ALREADY_RECORDED = "姓名和身份证号已核对（{name}，{id_number}），无需再输入。\n现在请输入本人11位手机号，例如：13800138000"
# [sms] verify_phone: the SMS code to the number typed.
CODE_SENT = ("验证码已发送到{phone}，请回复短信里的6位验证码（{minutes}分钟内有效）。\n"
             "没收到请回复“重发”；号码有误请直接输入正确的手机号。")
CODE_WRONG = "验证码不对，请核对短信后重新输入（还可以试{left}次）。没收到请回复“重发”。"
CODE_LOCKED = "验证码输错次数过多，这个验证码已失效。请回复“重发”获取新的验证码。"
CODE_EXPIRED = "验证码已过期，请回复“重发”获取新的验证码。"
CODE_NONE = "请先输入本人11位手机号，我们会发送验证码。"
CODE_TOO_MANY = "验证码发送次数过多，请{minutes}分钟后再回复“重发”，或输入其他手机号后再试。"
CODE_SEND_FAILED = "验证码短信发送失败，请稍后回复“重发”再试，或输入其他手机号。"
NO_MATCH = (
    "无法采集：没有找到与您输入的信息相符的毕业生。\n"
    "核对的是：姓名 {name}，身份证号 {id_number}，学历层次 {level}。\n"
    "请核对后重新输入姓名和身份证号；如确认无误，请联系市自考办核实：{phone}（{hours}）。"
)
# Name and ID number are on the roster, but under the other level.
OTHER_LEVEL = (
    "名单中有您的信息，但学历层次是“{found}”，不是您选择的“{chosen}”。\n"
    "回复“{found}”即可改为{found}并继续，无需重新输入姓名和身份证号。"
)
TOO_MANY_ATTEMPTS = (
    "核对失败次数过多，请{minutes}分钟后再试。\n"
    "如确认信息无误，请联系市自考办：{phone}（{hours}）。"
)
ROSTER_BUSY = (
    "现在核对信息的人太多，请稍后再试：{minutes}分钟后回复“核对”即可，无需重新填写姓名和身份证号。\n"
    "如有急事，请联系市自考办：{phone}（{hours}）。"
)
ID_BOUND_ELSEWHERE = (
    "该身份证号已在另一个微信号上采集。请使用本人微信采集，切勿帮他人采集。\n"
    "如需更换微信号，请联系市自考办：{phone}（{hours}）。"
)
CONFIRM_CARD = (
    "请认真核对您的信息：\n"
    "姓名：{name}\n"
    "身份证号：{id_number}\n"
    "准考证号：{exam_number}\n"
    "学历层次：{level}\n"
    "专业：{major}\n"
    "手机号：{phone}\n"
    "信息无误回复 1（确认）；有误回复 2（修改）。"
)
CONFIRM_CHOICES = "请回复 1 确认信息，或回复 2 修改。"
NOTICE = (
    "采集须知：\n"
    "1. 自考考生没有图像采集码，无需上传采集码。\n"
    "2. 本人近期正面免冠彩色证件照：浅蓝、白色或浅灰色纯色背景，无阴影；露出双耳和眉毛，双眼睁开平视，"
    "嘴唇闭合不露齿；头部约占画面一半。\n"
    "3. 不戴首饰、不化妆、不美颜，不戴有色眼镜；不穿无袖衣服，衣服颜色与背景不同。\n"
    "4. JPG格式，大于30KB，至少480×640像素；发送时勾选“原图”。\n"
    "详细要求发送“帮助”查看。阅读后请回复“我知道了”。"
)
NOTICE_AGAIN = "请阅读上面的采集须知，然后回复“我知道了”。"
ASK_PHOTO = "请发送本人标准证件照（发送图片时勾选“原图”）。"
PHOTO_EXPECTED = "这一步需要发送照片，不是文字。请点“+”选择相册里的证件照，勾选“原图”后发送。"
PHOTO_CHECKING = "照片已收到，正在检查，稍后把结果发给您，请勿重复发送。"
PHOTO_TOO_LARGE = "照片文件超过{limit_mb}MB，太大了。请发送证件照原图（通常1到5MB）。"
PHOTO_DOWNLOAD_FAILED = "照片接收失败，请重新发送一次（勾选“原图”）。"
PHOTO_FAILED = "照片未通过检查：\n{problems}\n请按以上提示重新拍摄或修改后，再次发送照片。"
PHOTO_REFRAMED_OFFER = (
    "照片未通过检查：\n{problems}\n"
    "这只是构图问题：我们把您的照片裁剪、缩放成了标准的480×640（只裁剪和缩放，没有做其他任何修改），已发给您。\n"
    "回复 1 使用调整后的照片，或按提示重拍后发送新照片。"
)
PHOTO_REFRAMED_TAKEN = "已使用调整后的照片。"
PHOTO_NO_REFRAMED = "现在没有可用的调整后照片。请发送新照片。"
PHOTO_APPEAL_OFFER = "如果您确认照片符合要求、是检查判断有误，可回复“申请人工审核”，由工作人员查看这张照片（人工审核也可能不通过）。"
PHOTO_APPEAL_NOT_AVAILABLE = "连续两次被自动检查拒绝（文件格式、像素和人数问题除外）后才能申请人工审核。请按提示修改后重新发送照片。"
PHOTO_APPEAL_SENT_PAID = "已申请人工审核：工作人员会在{review_hours}小时内查看这张照片，审核仍可能不通过，结果会通知您。"
PHOTO_APPEAL_SENT_PAY = (
    "已申请人工审核：工作人员会查看这张照片，审核仍可能不通过。\n"
    "请先支付采集费{fee}元，点击链接付款：\n{pay_url}\n付款后{review_hours}小时内完成审核。"
)
PHOTO_PASSED_PAY = (
    "照片检查通过！\n"
    "请支付采集费{fee}元，点击链接付款：\n{pay_url}\n"
    "付款后照片进入人工审核，{review_hours}小时内完成。"
)
PHOTO_PASSED_ALREADY_PAID = "照片检查通过！您已支付过采集费，无需再次付款。照片已重新提交审核，{review_hours}小时内完成。"
PHOTO_REPLACED = "新照片已替换您之前发送的照片，付款后审核的是这张新照片。"
PHOTO_FAILED_EARLIER_PAYABLE = "您之前发送的、已通过检查的照片仍然有效，可以直接用它付款（{fee}元）：\n{pay_url}"
PHOTO_WHILE_UNDER_REVIEW = ("这张新照片没有使用：您已提交的照片正在审核中，审核期间不能更换。"
                            "如果审核未通过，届时直接发送新照片即可，无需再次付费。")
PHOTO_AFTER_APPROVED = "这张新照片没有使用：您的照片已审核通过，无需再发送。发送“查看照片”可查看已通过的照片。"
PHOTO_NOT_USED = "您刚才发送的照片没有使用：您已进入“{step}”，发送“进度”查看当前进度。"
# An image at a step that takes text (before the photo step): not stored, the step's help follows.
PHOTO_TOO_EARLY = "现在还不能接收照片，这张照片没有保存。请先完成下面这一步，到上传照片那一步再发送。"
PAYMENT_PENDING = "请支付采集费{fee}元，点击链接付款：\n{pay_url}\n如需更换照片，直接发送新照片即可。"
PAYMENT_DONE = "支付成功（{fee}元）。照片已提交人工审核，{review_hours}小时内完成，结果会通知您。"
UNDER_REVIEW = "您的照片正在审核中，预计{deadline}前完成（还剩约{hours_left}小时）。请耐心等待通知。"
UNDER_REVIEW_OVERDUE = "您的照片正在审核中，审核时间已超过预期，我们正在加急处理，请耐心等待通知。"
APPROVED = "恭喜，您的毕业照片审核通过！照片将统一报送市自考办，无需自取。发送“查看照片”可查看您的照片。"
APPROVED_STATUS = "您的照片已审核通过。发送“查看照片”可查看照片。"
REJECTED = "您的照片审核未通过，原因：{reason}\n请按要求重新拍摄后直接发送新照片，无需再次付费。"
SENT_TO_REVIEW = "工作人员已将您的照片转人工审核，{review_hours}小时内完成，结果会通知您。"
SENT_TO_REVIEW_PAY_FIRST = ("工作人员已将您的照片转人工审核。请先支付采集费{fee}元：回复“缴费”获取付款链接，"
                            "付款后{review_hours}小时内完成审核。")
REVIEW_DELAYED = ("抱歉，您的照片审核超过了承诺的{review_hours}小时，我们正在加紧处理，结果会第一时间通知您。"
                  "无需重新提交或再次付费。")

# WeChat template messages, used when the 48-hour customer-service window has closed. These are
# the texts a template can show; which template field shows which is set in config
# ([notifications] wechat_template_<kind>_fields). Besides these, a template can show the
# candidate's name, the amount, the reason of a rejection and the time of the event.
TEMPLATE_AMOUNT = "{fee}元"
TEMPLATE_PAYMENT_DONE = {
    "title": "毕业照片采集费支付成功",
    "status": "审核中",
    "next": "照片已提交人工审核，{review_hours}小时内完成，结果会通知您。",
}
TEMPLATE_APPROVED = {
    "title": "您的毕业照片审核通过",
    "status": "审核通过",
    "next": "照片将统一报送市自考办。回复“查看照片”可查看。",
}
TEMPLATE_REJECTED = {
    "title": "您的毕业照片审核未通过",
    "status": "未通过",
    "next": "请进入公众号重新发送照片，无需再次付费。",
}
TEMPLATE_REVIEW_DELAYED = {
    "title": "抱歉，您的照片审核超时了",
    "status": "审核中",
    "next": "超过承诺的{review_hours}小时，我们正在加紧处理，结果会第一时间通知您。",
}
TEMPLATE_SUPPORT_REPLY = {
    "title": "客服回复了您的问题",
    "status": "客服已回复",
    "next": "请打开公众号查看并回复，或致电{phone}（{hours}）。",
}
NO_APPROVED_PHOTO = "您还没有审核通过的照片。发送“进度”查看当前进度。"
# The photo was deleted when its retention period ended ([retention] photos_days).
PHOTO_DELETED = "您的照片已按保存期限删除。如需照片，请致电{phone}（{hours}）。"

# --- the sandbox payment page ----------------------------------------------------------------------
PAY_PAGE = {
    "title": "毕业照片采集费",
    "order": "订单号：{out_trade_no}",
    "pay_button": "确认支付 ¥{amount}",
    "paid": "已支付。请返回微信，照片将在{review_hours}小时内审核完成。",
    "closed": "此订单已关闭。请返回微信发送“进度”获取新的支付链接。",
    "ended": "此支付链接已作废：您已在微信中重新开始（或已解绑该微信号），请不要在此付款。"
              "请返回微信按提示重新填写信息并上传照片，再用新发送的支付链接缴费。",
    "ended_paid": "此订单已作废，您为它支付的款项将自动原路退回，无需其他操作。如需缴费，请返回微信按提示操作。",
    "sandbox_note": "沙箱支付：用于演示和测试，不会真实扣款。",
}

# A payment page that cannot be shown (both gateways): a damaged link, or the system failing mid-way.
PAY_ERROR_PAGES = {
    404: ("支付链接无效", "此支付链接无效，可能没有复制完整。请返回微信发送“进度”获取支付链接。"),
    500: ("系统繁忙", "页面暂时打不开，请稍后刷新本页重试。是否已付款可返回微信发送“进度”查看；重复支付的款项会自动原路退回。"),
}

# WeChat Pay (JSAPI): the page opened from the payment link inside WeChat.
WECHATPAY_PAGE = {
    "title": "毕业照片采集费",
    "order": "订单号：{out_trade_no}",
    "pay_button": "微信支付 ¥{amount}",
    "paying": "请在弹出的微信支付窗口中完成付款。付款后本页会自动显示结果。",
    "checking": "正在确认付款结果，请稍候……",
    "open_in_wechat": "请在微信中打开此链接完成支付。",
    "paid": "已支付。请返回微信，照片将在{review_hours}小时内审核完成。",
    "closed": "此订单已关闭。请返回微信发送“进度”获取新的支付链接。",
    "ended": "此支付链接已作废：您已在微信中重新开始（或已解绑该微信号），请不要在此付款。"
              "请返回微信按提示重新填写信息并上传照片，再用新发送的支付链接缴费。",
    "ended_paid": "此订单已作废，您为它支付的款项将自动原路退回，无需其他操作。如需缴费，请返回微信按提示操作。",
    "expired": "此支付链接已过期。请返回微信发送“进度”获取新的支付链接。",
    "wrong_payer": "此支付链接属于另一个微信号。请用提交照片的本人微信打开，或在本人微信中发送“进度”获取支付链接。",
    "login_failed": "未能确认您的微信身份，请点击下方按钮重试。",
    "retry": "重试",
    "unavailable": "微信支付暂时无法下单，请稍后刷新本页重试。",
}
# Shown in the payer's WeChat Pay bill, and as the reason of an automatic refund.
WECHATPAY_DESCRIPTION = "北京自考毕业照片采集费"
REFUND_REASON_DUPLICATE = "毕业照片采集费重复支付，自动退回"
REFUNDED = "您重复支付的采集费{fee}元已原路退回，请留意微信支付的退款通知，无需其他操作。"
REFUND_REASON_ENDED = "毕业照片采集订单已作废（重新开始或解绑后支付），自动退回"
ENDED_ORDER_REFUNDING = (
    "您刚才支付的{fee}元来自一个已作废的支付链接（您已重新开始或解绑），不计入本次采集，"
    "将自动原路退回，请留意微信支付的退款通知。如需缴费，请按对话中最新的提示操作。"
)

# --- commands that work at any step --------------------------------------------------------------
HELP = {
    "welcome": "请输入院校名称：{institution}",
    "institution": "请一字不差地输入院校名称：{institution}（不要输入您毕业学校的名称）。",
    "level": "请回复学历层次前面的数字：\n{levels}",
    "identity": "请输入本人姓名和18位身份证号，中间用空格隔开，例如：张三 110101199003071234",
    "phone": "请输入本人11位手机号，例如：13800138000",
    "phone.code": "请输入本人11位手机号，例如：13800138000。收到短信验证码后回复6位验证码；没收到请回复“重发”。",
    "confirm": "请核对信息：无误回复 1，有误回复 2 重新输入。",
    "notice": ("照片详细要求：\n"
               "· 背景：浅蓝、白色或浅灰色，纯色均匀，无阴影、无杂物；人离背景稍远。\n"
               "· 头部：正对镜头，不歪头、不侧脸；头部约占照片高度一半，头顶留少量空白。\n"
               "· 面部：露出双耳和眉毛，头发不遮挡；双眼自然睁开，嘴唇闭合不露齿；常戴的透明眼镜可以戴，镜片不反光。\n"
               "· 不戴帽子、头饰、耳环、项链等首饰；不化妆、不美颜、不用滤镜。\n"
               "· 衣服：有领或有袖的日常衣服，不穿无袖、吊带衣服；颜色与背景不同。\n"
               "· 文件：JPG格式，大于30KB，至少480×640像素，宽:高 = 3:4；发送时勾选“原图”，不要截图。\n"
               "阅读后请回复“我知道了”。"),
    "photo": "请发送本人证件照：点“+”→“相册”，选中照片并勾选“原图”后发送。",
    "payment": "请点击支付链接完成付款（{fee}元）。发送“进度”可再次获取链接。",
    "under_review": "照片审核中，{review_hours}小时内完成，结果会通知您。",
    "approved": "照片已审核通过。发送“查看照片”可查看照片。",
}
HELP_FOOTER = "\n其他指令：进度（查看进度）、重新开始（付款前可用）、人工（联系客服）。"
PROGRESS = "当前进度：{step}\n{detail}"
PROGRESS_STEPS = {
    "welcome": "尚未开始",
    "institution": "查询院校",
    "level": "选择学历层次",
    "identity": "填写姓名和身份证号",
    "phone": "填写手机号",
    "confirm": "核对信息",
    "notice": "阅读采集须知",
    "photo": "上传照片",
    "payment": "待支付",
    "under_review": "审核中",
    "approved": "审核通过",
}
PROGRESS_LAST_REJECTION = "上次审核未通过：{reason}"
RESTARTED = "已重新开始。"
RESTART_AFTER_PAYMENT = "您已付款，不能重新开始。如信息有误，请联系市自考办：{phone}（{hours}）。"
HUMAN_REQUESTED = ("已转给人工客服。客服接手时会在这里告诉您，接手前您仍可继续自助办理；"
                   "客服工作时间{hours}。急事请致电：{phone}。")
# Outside the collection window there is nothing to do on one's own while waiting.
HUMAN_REQUESTED_WINDOW_SHUT = "已转给人工客服。客服接手时会在这里告诉您；客服工作时间{hours}。急事请致电：{phone}。"
# --- the support desk (staff/support.py) ---------------------------------------------------------
AGENT_TOOK_OVER = "人工客服已接手您的对话，请直接在这里说明您的问题，客服会在这里回复您。"
HANDED_BACK_NOTE = "人工客服已结束，您回到了自助办理。"
HANDED_BACK = HANDED_BACK_NOTE + "{next}"
SENT_BACK_TO_PHOTO = "工作人员请您重新上传照片：请直接发送一张符合要求的证件照。"
PHONE_CORRECTED = "工作人员已将您的手机号更正为 {phone}。"
# Ready-made answers for agents, loaded into the console's editable list the first time it is used.
# Placeholders: {name} (the candidate's name), {office_phone}, {deadline} (when the collection closes).
CANNED_REPLIES = (
    ("照片要求", "{name}您好，请发送白色或浅蓝色背景、正面免冠、露出双耳的彩色证件照，不要美颜。"),
    ("截止时间", "{name}您好，本次照片采集截止到{deadline}，请在此之前完成上传和缴费。"),
    ("电话咨询", "{name}您好，您的情况需要电话核实，请在工作时间致电市自考办：{office_phone}。"),
)
UNSUPPORTED_MESSAGE = "暂时只能识别文字和图片。"
WINDOW_NOT_YET_OPEN = "照片采集将于{start}开放，请届时再来。"
WINDOW_CLOSED = "本次照片采集已于{end}结束。如有疑问请联系市自考办：{phone}（{hours}）。"
# Outside the window only these work (a candidate who has paid keeps every command).
OUTSIDE_WINDOW_COMMANDS = "现在可用的指令：进度（查看进度）、人工（联系客服）。"
OUTSIDE_WINDOW_PROGRESS = "当前进度：{step}（未完成）"
SYSTEM_ERROR = "系统繁忙，您的消息已收到。请稍后再发一次，或发送“人工”联系客服。"

# --- photo checker (rules/photo) -------------------------------------------------------------
# One entry per rule id. Each says what is wrong and what to do about it.
PHOTO_RULES = {
    # file
    "file.format": "照片格式是 {value}，不是 JPG。请保存为 JPG 格式后重新发送。",
    "file.format.animated": "这是一张动图（{value}），不是照片。请发送 JPG 格式的证件照。",
    "file.format.empty": "没有收到照片内容（文件为空）。请重新发送照片，并勾选“原图”。",
    "file.format.unknown": "这个文件不是照片，无法打开。请发送 JPG 格式的证件照。",
    "file.format.heic": "照片是 HEIC 格式（苹果手机默认格式），不是 JPG。请在“设置→相机→格式”选“兼容性最佳”后重拍，或转成 JPG 后发送。",
    "file.format.corrupt": "照片文件已损坏或不完整，无法打开。请重新导出照片后发送原图。",
    "file.size": ("照片文件太小（{value}），需大于 {threshold}，可能被压缩了。请发送原图：选好照片后勾选左下角的“原图”再发送，"
                  "不要截图或转发。"),
    "file.size.too_large": "照片文件太大（{value}），不能超过 {threshold}。请发送正常拍摄的 JPG 照片。",
    # image
    "image.resolution": "照片像素太低（{value}），至少需要 {threshold}。请发送原图，不要截图或压缩。",
    "image.resolution.too_large": "照片像素过大（{value}），超过 {threshold}，无法处理。请用手机相机的普通模式拍摄后发送。",
    "image.resolution.too_large_to_decode": "这张非 JPG 照片像素过大（{value}），超过 {threshold}，无法处理。请发送手机相机拍摄的 JPG 照片。",
    "image.aspect": "照片宽高比例不对（{value}），应为竖版 {threshold}。请裁剪成宽:高 = 3:4 后发送。",
    "image.aspect.landscape": "照片是横版的（{value}），应为竖版 {threshold}。请竖着拍，或裁剪成宽:高 = 3:4 后发送。",
    "image.color": "照片不是彩色照片（{value}）。请发送彩色 JPG 照片。",
    "image.color.gray": "照片是黑白的。请发送彩色照片。",
    "image.color.cmyk": "照片是印刷用的 CMYK 颜色模式。请转成 RGB 彩色 JPG 后发送。",
    "image.color.palette": "照片颜色数太少（索引色）。请发送相机拍摄的彩色 JPG 原图。",
    "image.orientation.sideways": "照片是横躺的（人像侧倒了 90 度）。请把照片转正（人像头朝上）后重新发送。",
    "image.orientation.upside_down": "照片是倒过来的（人像头朝下）。请把照片转正后重新发送。",
    # face count
    "face.count.none": "照片里没有找到人脸。请正对镜头拍摄本人正面照。",
    "face.count.many": "照片里有 {value} 个人。只能有本人一人，请单独拍摄。",
    # background
    "background.color": "背景是{colour}，不是允许的浅蓝色、白色或浅灰色。请在这三种颜色之一的纯色背景前重拍。",
    "background.color.dark": ("背景是{colour}，颜色太深。背景只能是浅蓝色、白色或浅灰色（红色等其他颜色调浅了也不行），"
                              "请在这三种颜色之一的纯色背景前重拍。"),
    "background.uniform": "背景不均匀（有渐变、阴影或杂物）。请在干净的纯色背景前重拍，人离背景远一点并让光线均匀。",
    "background.uniform.gradient": "背景颜色有渐变，上下深浅不一。请在颜色均匀的纯色背景前重拍。",
    "background.uniform.spots": "背景上有阴影、物体或其他人。请在干净的纯色背景前重拍，人离背景远一点。",
    "background.contrast": "衣服颜色和背景太接近，分不清。请换一件深色或与背景颜色不同的衣服重拍。",
    # framing
    "head.size": "头部在照片中太小：头顶到下巴约占照片高度的 {value}，应在 {low} 到 {high} 之间。请靠近镜头或裁剪后重新发送。",
    "head.size.large": "头部在照片中太大：头顶到下巴约占照片高度的 {value}，应在 {low} 到 {high} 之间。请离镜头远一点，拍到肩膀。",
    "head.position": "人像没有居中（偏离中线 {value}）。请让头部位于照片左右正中。",
    "head.position.top_small": "头顶上方留白太少。请让头顶上方留出一点空白后重拍。",
    "head.position.top_large": "头顶上方留白太多，人像太靠下。请让头部位于照片中上部后重拍。",
    # face
    "face.pose": "头部没有正对镜头。请正面平视镜头，不要转头、歪头、抬头或低头。",
    "face.pose.yaw": "头部向一侧转了约 {value} 度。请正对镜头，不要侧脸。",
    "face.pose.roll": "头部歪了约 {value} 度。请保持头部端正、两肩同高。",
    "face.pose.pitch": "头部抬起或低下了约 {value} 度。请平视镜头。",
    "face.eyes": "眼睛没有睁开。请双眼自然睁开，平视镜头。",
    "face.mouth": "嘴巴张开或露出了牙齿。请嘴唇自然闭合（可以微笑，但不要露齿）。",
    "face.glasses": "检测到有色或深色镜片。请摘下墨镜/有色眼镜，常戴的透明眼镜可以戴。",
    # quality
    "quality.sharpness": "照片不清晰（模糊）。请对焦后重拍，拍摄时手机保持稳定。",
    "quality.exposure.dark": "照片太暗，脸部看不清。请在光线充足、均匀的地方重拍。",
    "quality.exposure.bright": "照片太亮（过曝），脸部细节丢失。请避开强光、关闭闪光灯后重拍。",
    "quality.color": "照片颜色不自然（偏色）。请在白光下拍摄，不要使用滤镜。",
}
# For staff reviewers, not for candidates: what the machine cannot judge reliably.
PHOTO_HINTS = {
    "beauty_app": "EXIF 软件字段为“{value}”（美颜 App），可能经过美颜，请人工确认不是过度美颜照。",
    "edited": "EXIF 软件字段为“{value}”，照片可能经过编辑，请人工确认。",
    "glasses": "可能戴眼镜（鼻梁处边缘强度比 {value}）：请确认镜片无反光、镜框不遮挡眼睛。",
    "eyebrows": "眉毛可能被头发遮挡（眉上区域肤色占比 {value}），请确认。",
    "clothing": "肩部大面积露出皮肤（肤色占比 {value}），可能是无袖或吊带，请确认。",
    "rule_error": "以下检查未能完成：{value}。请人工重点核对这几项。",
    "unsure": "接近限值、在测量误差内，未据此拒绝：{rule}（测得 {value}，限值 {threshold}），请人工核对。",
}

# Reminder campaigns (staff/reminders.py): a recipient whose name is unknown; the template message's
# title and closing line (the staff's text goes in the template's text field).
REMINDER_NO_NAME = "考生"
REMINDER_TEMPLATE_TITLE = "毕业照片采集提醒"
REMINDER_TEMPLATE_NEXT = "请打开公众号，按提示完成照片采集。"
