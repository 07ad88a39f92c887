"""The AppBuilder "Run" notebook, cell for cell, with only the import changed.

    .venv/bin/python examples/assistants_notebook.py

Without APPBUILDER_TOKEN it runs against the local fake (in a background thread, since these calls block);
with it (and optionally GATEWAY_URL) it talks to the real service.
"""

from __future__ import annotations

import os

import aioagents.compat.appbuilder as appbuilder
from aioagents.testing._appbuilder import FakeAppBuilderServer


def notebook() -> None:
    # 首先创建一个asstistant
    assistant = appbuilder.assistant.assistants.create(
        name="test_assistant", description="test assistant", instructions="每句话回复前都加上我是秦始皇"
    )

    # 创建一个thread会话
    thread = appbuilder.assistant.threads.create()
    appbuilder.assistant.threads.messages.create(
        thread_id=thread.id,
        content="hello world",
    )

    # 运行会话
    run_result = appbuilder.assistant.threads.runs.run(
        thread_id=thread.id,
        assistant_id=assistant.id,
    )

    # 打印对话运行信息
    print(run_result)

    # 列出对应thread的历史run记录,使用limit参数限制返回数量,默认返回20条
    run_list = appbuilder.assistant.threads.runs.list(thread_id=thread.id, limit=5)

    # 打印获取到的历史run信息
    for run_data in run_list.data:
        print(run_data)

    run_query = appbuilder.assistant.threads.runs.query(thread_id=thread.id, run_id=run_result.id)

    # 打印获取到的目标run信息
    print(run_query)

    step_list = appbuilder.assistant.threads.runs.steps.list(
        thread_id=thread.id,
        run_id=run_result.id,
    )

    # 打印对应run的历史step记录
    for step_data in step_list.data:
        print(step_data)

    last_step = step_list.data[-1]
    last_step_id = last_step.id

    step_query = appbuilder.assistant.threads.runs.steps.query(
        thread_id=thread.id,
        run_id=run_result.id,
        step_id=last_step_id,
    )

    # 打印查询到的对应step的信息
    print(step_query)

    # The answer itself, as the SDK's models lay it out.
    print("answer:", run_result.final_answer.message.content[0].text.value)


def main() -> None:
    if os.environ.get("APPBUILDER_TOKEN"):
        notebook()
        return
    server = FakeAppBuilderServer()
    with server.in_thread():
        os.environ["APPBUILDER_TOKEN"] = server.token
        os.environ["GATEWAY_URL"] = server.url
        notebook()


if __name__ == "__main__":
    main()
